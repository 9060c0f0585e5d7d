-- Lines read before the vault's balances were held against the instructions a node served: a
-- payout made inside a call the node left out of `meta.innerInstructions` (served as `[]`, or
-- its groups listed under other instructions) read as a smaller deposit, with no finding. Only
-- money seen going into the vault can hide one: lines whose stored transaction shows a movement
-- into it (or facts kept before movements' amounts were) are read again; until then the
-- statement counts them as not read (not complete).
UPDATE "ledger_lines" AS l SET "state" = 'listed'
WHERE l."state" = 'read' AND l."succeeded" = true AND EXISTS (
  SELECT 1 FROM "chain_transactions" AS t
  CROSS JOIN LATERAL json_array_elements(
    CASE WHEN json_typeof(t."facts" -> 'tokenInstructions') = 'array'
      THEN t."facts" -> 'tokenInstructions' ELSE '[]'::json END
  ) AS i(value)
  WHERE t."signature" = l."signature" AND (
    (i.value ->> 'destination') = l."vault"
    OR ((i.value ->> 'kind') IN ('transfer', 'transferChecked',
          'transferCheckedWithFee', 'mintTo', 'mintToChecked')
        AND i.value -> 'amount' IS NULL)
  )
);
