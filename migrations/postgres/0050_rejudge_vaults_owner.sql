-- Under a profile naming no escrow authority, a lock was judged only against the escrow account
-- it went into: a customer's vault and a fresh escrow account both handed to the operator's key
-- before the lock agreed, and the job stayed clean. The verifier now learns the escrow authority
-- from the first lock written ("profile_pins", name 'escrow_authority') and judges every job as
-- under a profile naming it. Here, per profile (by the name its clean verdicts were judged
-- under), the owner of the account the earliest clean verdict's lock debited is pinned, as the
-- verifier would have, and clean verdicts whose lock debited an account another owns are judged
-- again ('upgrade', as "reopenJobs" does), from the stored transactions. A profile naming its
-- escrow authority passed only locks from accounts it owns: the pin names it, unread, and no
-- verdict is sent back. Verdicts that name no profile are judged again by the profile sweep.
CREATE TEMP TABLE "rejudge_lock_owner" ("job_id" text PRIMARY KEY, "profile" text, "owner" text, "at" bigint);
--> statement-breakpoint
INSERT INTO pg_temp."rejudge_lock_owner"
  SELECT DISTINCT ON (j."job_id") j."job_id", split_part(j."verdict_profile", '@', 1),
    o.v ->> 'owner', j."verdict_at"
  FROM "jobs" AS j
    JOIN "chain_transactions" AS t ON t."signature" = j."escrow_tx"
    CROSS JOIN LATERAL json_array_elements(CASE WHEN json_typeof(t."facts" -> 'tokenChanges') = 'array' THEN t."facts" -> 'tokenChanges' ELSE '[]'::json END) AS o(v)
  WHERE j."verdict" IN ('verified', 'partially_verified') AND j."verdict_profile" LIKE '%@%'
    AND (o.v ->> 'delta') LIKE '-%' AND (o.v ->> 'owner') IS NOT NULL
  ORDER BY j."job_id";
--> statement-breakpoint
INSERT INTO "profile_pins" ("profile", "name", "value", "evidence", "pinned_at")
  SELECT DISTINCT ON (r."profile") r."profile", 'escrow_authority', r."owner", 1,
    (extract(epoch from clock_timestamp()) * 1000)::bigint
  FROM pg_temp."rejudge_lock_owner" AS r
  ORDER BY r."profile", r."at", r."job_id"
ON CONFLICT DO NOTHING;
--> statement-breakpoint
UPDATE "jobs" SET "previous_verdict" = "verdict", "rejudge_reason" = 'upgrade',
  "verdict" = 'pending', "next_verify_at" = 0, "verify_attempts" = 0,
  "last_error" = NULL, "lease_owner" = NULL, "lease_until" = NULL,
  "updated_at" = (extract(epoch from clock_timestamp()) * 1000)::bigint
WHERE "verdict" IN ('verified', 'partially_verified') AND "job_id" IN (
  SELECT r."job_id" FROM pg_temp."rejudge_lock_owner" AS r
    JOIN "profile_pins" AS p ON p."profile" = r."profile" AND p."name" = 'escrow_authority'
  WHERE r."owner" <> p."value"
);
--> statement-breakpoint
DROP TABLE pg_temp."rejudge_lock_owner";
