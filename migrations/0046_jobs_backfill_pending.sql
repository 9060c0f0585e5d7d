DROP INDEX `jobs_backfill`;--> statement-breakpoint
CREATE INDEX `jobs_backfill` ON `jobs` (`backfill_next_at`) WHERE "jobs"."backfill_state" = 'pending';