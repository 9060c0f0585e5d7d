-- A line listed after a vault's last judgement (an endpoint that hid it, a node that listed it
-- late) is judged by the next nightly run whatever its block time: each vault remembers when
-- its last judgement took its statements, and lines are found by when they were listed.
ALTER TABLE "ledger_cursors" ADD COLUMN "judged_at" bigint;--> statement-breakpoint
CREATE INDEX "ledger_lines_listed" ON "ledger_lines" USING btree ("vault","listed_at");
