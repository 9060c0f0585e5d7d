DROP INDEX "jobs_backfill";--> statement-breakpoint
CREATE INDEX "jobs_backfill" ON "jobs" USING btree ("backfill_next_at") WHERE "jobs"."backfill_state" = 'pending';