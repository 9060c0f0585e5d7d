ALTER TABLE `jobs` ADD `previous_verdict` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `rejudge_reason` text;--> statement-breakpoint
CREATE INDEX `jobs_rejudging` ON `jobs` (`created_at`) WHERE "jobs"."previous_verdict" is not null;--> statement-breakpoint
-- Before only a final status (settled, refunded, failed) ended the jobs API's questions, an
-- answer naming the settlement with another status (`settling`, a word the protocol does not
-- list such as `completed`) ended them: its credits_charged was never compared with the chain,
-- and the job may stand verified. Such a job is asked about again by the settlement backfill,
-- from its first attempt, and judged again: `partially_verified` (jobs_api_not_final) until a
-- final answer comes, as a job recorded now. The status is read as `jobStatusWord` reads it
-- (src/store/jobs-api-rules.ts: white space trimmed, case ignored).
UPDATE `jobs` SET `backfill_state` = 'pending', `backfill_attempts` = 0,
  `backfill_next_at` = 0
WHERE `api_checked_at` IS NOT NULL
  AND (`api_status` IS NULL
    OR lower(trim(`api_status`, char(32, 9, 10, 11, 12, 13, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197, 8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288, 65279))) NOT IN ('settled', 'refunded', 'failed'))
  AND (`backfill_state` IS NULL OR `backfill_state` = 'done');--> statement-breakpoint
-- A clean verdict reached without that comparison is reopened as `reopenJobs` does, keeping it
-- as the verdict judged again (`previous_verdict`, `rejudge_reason` 'upgrade').
UPDATE `jobs` SET `previous_verdict` = `verdict`, `rejudge_reason` = 'upgrade',
  `verdict` = 'pending', `next_verify_at` = 0, `verify_attempts` = 0,
  `last_error` = NULL, `lease_owner` = NULL, `lease_until` = NULL,
  `updated_at` = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
WHERE `api_checked_at` IS NOT NULL
  AND (`api_status` IS NULL
    OR lower(trim(`api_status`, char(32, 9, 10, 11, 12, 13, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197, 8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288, 65279))) NOT IN ('settled', 'refunded', 'failed'))
  AND `verdict` IN ('verified', 'partially_verified');
