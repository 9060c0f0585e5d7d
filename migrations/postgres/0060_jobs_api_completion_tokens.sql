ALTER TABLE "jobs" ADD COLUMN "api_completion_tokens" bigint;
--> statement-breakpoint
-- As SQLite's 0069: the usage the kept answers name, for every job with none recorded, and the
-- partially verified ones judged again ('upgrade'). An answer kept with a NUL in a string (JSON
-- `\u0000`, which `json` holds and `jsonb` refuses) is read as naming none, so that it cannot
-- stop the upgrade.
UPDATE "jobs" SET "api_completion_tokens" = (
  SELECT CASE
    WHEN strpos(a."response"::text, '\u0000') > 0 THEN NULL
    WHEN jsonb_typeof(a."response"::jsonb #> '{usage,completion_tokens}') = 'number'
      AND (a."response"::jsonb #>> '{usage,completion_tokens}') ~ '^[0-9]{1,9}$'
      AND (a."response"::jsonb #>> '{usage,completion_tokens}')::bigint <= 100000000
      THEN (a."response"::jsonb #>> '{usage,completion_tokens}')::bigint
  END
  FROM "job_api_answers" AS a
  WHERE a."job_id" = "jobs"."job_id"
)
WHERE "completion_tokens" IS NULL;
--> statement-breakpoint
UPDATE "jobs" SET "previous_verdict" = "verdict", "rejudge_reason" = 'upgrade',
  "verdict" = 'pending', "next_verify_at" = 0, "verify_attempts" = 0,
  "last_error" = NULL, "lease_owner" = NULL, "lease_until" = NULL,
  "updated_at" = (extract(epoch from clock_timestamp()) * 1000)::bigint
WHERE "verdict" = 'partially_verified' AND "completion_tokens" IS NULL
  AND "api_completion_tokens" IS NOT NULL;
