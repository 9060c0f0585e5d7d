DROP INDEX "jobs_treasury_waiting";--> statement-breakpoint
CREATE INDEX "jobs_treasury_waiting" ON "jobs" USING btree ("created_at") WHERE "jobs"."verdict" IN ('partially_verified', 'discrepancy', 'dropped', 'unverifiable') AND ("jobs"."unproven")::text LIKE '%"treasury_unknown"%';
--> statement-breakpoint
-- As SQLite's 0067: a verdict failing for another reason judged while the treasury was learned
-- kept the one payee's pay in its treasury figure for good; it is judged again ('upgrade').
UPDATE "jobs" SET "previous_verdict" = "verdict", "rejudge_reason" = 'upgrade',
  "verdict" = 'pending', "next_verify_at" = 0, "verify_attempts" = 0,
  "last_error" = NULL, "lease_owner" = NULL, "lease_until" = NULL,
  "updated_at" = (extract(epoch from clock_timestamp()) * 1000)::bigint
WHERE "verdict" IN ('discrepancy', 'dropped', 'unverifiable') AND EXISTS (
  SELECT 1 FROM "check_results" AS c
  WHERE c."job_id" = "jobs"."job_id" AND c."name" = 'settlement.recipients'
    AND c."outcome" = 'skip' AND c."reason" LIKE 'the treasury is not known yet%'
);
