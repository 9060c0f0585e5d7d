-- Verdicts written before a transfer's signing authority was judged against the owner of the
-- account it spends, and before the owners of the credit vault and the escrow account were
-- compared across a job's transactions, stay clean however they were paid: a lock or release a
-- delegate signed (escrow.source, escrow.vault), under a profile naming no escrow authority a lock
-- from a vault whose owner is not the escrow account's (escrow.source), and a vault or escrow
-- account another owns at the release than at the lock (escrow.source, escrow.vault). Each shows
-- in the stored facts of the job's transactions, whatever the profile: a transfer or burn whose
-- authority is not the owner its token balances name for its source (facts kept before the
-- authority was: that owner not among its accounts), a lock debiting one owner's account and
-- crediting another's in the same mint, or an account whose owner at the settlement or refund is
-- not its owner at the lock. Only clean verdicts showing one are judged again ('upgrade', as
-- "reopenJobs" does), from the stored transactions; an honest job, every account of it owned by
-- the one escrow authority that signs, shows none and keeps its verdict.
UPDATE "jobs" SET "previous_verdict" = "verdict", "rejudge_reason" = 'upgrade',
  "verdict" = 'pending', "next_verify_at" = 0, "verify_attempts" = 0,
  "last_error" = NULL, "lease_owner" = NULL, "lease_until" = NULL,
  "updated_at" = (extract(epoch from clock_timestamp()) * 1000)::bigint
WHERE "verdict" IN ('verified', 'partially_verified') AND (
  EXISTS (
    SELECT 1 FROM "chain_transactions" AS t
      CROSS JOIN LATERAL json_array_elements(CASE WHEN json_typeof(t."facts" -> 'tokenInstructions') = 'array' THEN t."facts" -> 'tokenInstructions' ELSE '[]'::json END) AS i(v)
      CROSS JOIN LATERAL (SELECT v ->> 'account' AS "account", v ->> 'owner' AS "owner"
        FROM json_array_elements(CASE WHEN json_typeof(t."facts" -> 'tokenChanges') = 'array' THEN t."facts" -> 'tokenChanges' ELSE '[]'::json END) AS tc(v)
      UNION ALL SELECT v ->> 'account', v ->> 'owner'
        FROM json_array_elements(CASE WHEN json_typeof(t."facts" -> 'ownersAfter') = 'array' THEN t."facts" -> 'ownersAfter' ELSE '[]'::json END) AS oa(v)) AS o
    WHERE t."signature" IN ("jobs"."escrow_tx", "jobs"."api_escrow_tx",
        "jobs"."settlement_tx", "jobs"."api_settlement_tx")
      AND (i.v ->> 'kind') IN ('transfer', 'transferChecked', 'transferCheckedWithFee', 'transferFeeExtension', 'burn', 'burnChecked')
      AND o."account" = (i.v ->> 'source') AND o."owner" IS NOT NULL
      AND CASE WHEN (i.v ->> 'authority') IS NOT NULL
        THEN (i.v ->> 'authority') <> o."owner"
        ELSE NOT EXISTS (SELECT 1 FROM json_array_elements_text(CASE WHEN json_typeof(i.v -> 'accounts') = 'array' THEN i.v -> 'accounts' ELSE '[]'::json END) AS a(k) WHERE a.k = o."owner")
      END
  )
  OR EXISTS (
    SELECT 1 FROM "chain_transactions" AS e
      CROSS JOIN LATERAL json_array_elements(CASE WHEN json_typeof(e."facts" -> 'tokenChanges') = 'array' THEN e."facts" -> 'tokenChanges' ELSE '[]'::json END) AS d(v)
      CROSS JOIN LATERAL json_array_elements(CASE WHEN json_typeof(e."facts" -> 'tokenChanges') = 'array' THEN e."facts" -> 'tokenChanges' ELSE '[]'::json END) AS c(v)
    WHERE e."signature" IN ("jobs"."escrow_tx", "jobs"."api_escrow_tx")
      AND (d.v ->> 'delta') LIKE '-%'
      AND (c.v ->> 'delta') NOT LIKE '-%'
      AND (d.v ->> 'mint') = (c.v ->> 'mint')
      AND (d.v ->> 'owner') <> (c.v ->> 'owner')
  )
  OR EXISTS (
    SELECT 1 FROM "chain_transactions" AS e
      CROSS JOIN "chain_transactions" AS s
      CROSS JOIN LATERAL (SELECT v ->> 'account' AS "account", v ->> 'owner' AS "owner"
        FROM json_array_elements(CASE WHEN json_typeof(e."facts" -> 'tokenChanges') = 'array' THEN e."facts" -> 'tokenChanges' ELSE '[]'::json END) AS tc(v)
      UNION ALL SELECT v ->> 'account', v ->> 'owner'
        FROM json_array_elements(CASE WHEN json_typeof(e."facts" -> 'ownersAfter') = 'array' THEN e."facts" -> 'ownersAfter' ELSE '[]'::json END) AS oa(v)) AS x
      CROSS JOIN LATERAL (SELECT v ->> 'account' AS "account", v ->> 'owner' AS "owner"
        FROM json_array_elements(CASE WHEN json_typeof(s."facts" -> 'tokenChanges') = 'array' THEN s."facts" -> 'tokenChanges' ELSE '[]'::json END) AS tc(v)
      UNION ALL SELECT v ->> 'account', v ->> 'owner'
        FROM json_array_elements(CASE WHEN json_typeof(s."facts" -> 'ownersAfter') = 'array' THEN s."facts" -> 'ownersAfter' ELSE '[]'::json END) AS oa(v)) AS y
    WHERE e."signature" IN ("jobs"."escrow_tx", "jobs"."api_escrow_tx")
      AND s."signature" IN ("jobs"."settlement_tx", "jobs"."api_settlement_tx")
      AND x."account" = y."account" AND x."owner" <> y."owner"
  )
);
