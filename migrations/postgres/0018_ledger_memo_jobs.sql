-- Every step and job a ledger line's memos name, when they name more than one: a statement
-- finding, and the line is judged with each job it names (before, only the first memo was kept,
-- and a refund whose first memo named another job id gave a job's vault back more than its lock
-- unseen). The profile's memo prefixes are not known here: lines read before keep what they were
-- read as.
ALTER TABLE "ledger_lines" ADD COLUMN "memo_jobs" text;--> statement-breakpoint
CREATE INDEX "ledger_lines_memo_jobs" ON "ledger_lines" USING btree ("vault","block_time") WHERE "ledger_lines"."memo_jobs" IS NOT NULL;