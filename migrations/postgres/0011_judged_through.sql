-- A nightly run judges each credit vault's history from where the last one stopped, not only
-- its own window: a vault learned late (or a night the cron skipped) is judged from the start.
-- And whether a line's transaction created the vault's account: history before the oldest line
-- read is whole only when that line is the creation.
ALTER TABLE "ledger_cursors" ADD COLUMN "judged_through" bigint;--> statement-breakpoint
ALTER TABLE "ledger_lines" ADD COLUMN "opened" boolean;
