ALTER TABLE `jobs` ADD `api_completion_tokens` integer;--> statement-breakpoint
-- A job judged with no usage recorded (a stream read without its usage) was priced by nothing:
-- partially verified, its charge bounded by the lock only, whatever usage its jobs API answer
-- named. The usage of the answers kept (`job_api_answers`) is read into the new column for
-- every job with no usage recorded, whatever its verdict (a settled answer is final: no later
-- one writes it), as a whole number within ingest's bounds, as the recorder reads it; the
-- partially verified jobs whose answer names one are judged again ('upgrade', as `reopenJobs`
-- does).
UPDATE `jobs` SET `api_completion_tokens` = (
  SELECT CAST(json_extract(a.`response`, '$.usage.completion_tokens') AS INTEGER)
  FROM `job_api_answers` AS a
  WHERE a.`job_id` = `jobs`.`job_id` AND json_valid(a.`response`)
    AND json_type(a.`response`, '$.usage.completion_tokens') = 'integer'
    AND json_extract(a.`response`, '$.usage.completion_tokens') BETWEEN 0 AND 100000000
)
WHERE `completion_tokens` IS NULL;
--> statement-breakpoint
UPDATE `jobs` SET `previous_verdict` = `verdict`, `rejudge_reason` = 'upgrade',
  `verdict` = 'pending', `next_verify_at` = 0, `verify_attempts` = 0,
  `last_error` = NULL, `lease_owner` = NULL, `lease_until` = NULL,
  `updated_at` = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
WHERE `verdict` = 'partially_verified' AND `completion_tokens` IS NULL
  AND `api_completion_tokens` IS NOT NULL;
