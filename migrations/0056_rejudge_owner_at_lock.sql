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
-- `reopenJobs` does), from the stored transactions; an honest job, every account of it owned by
-- the one escrow authority that signs, shows none and keeps its verdict.
UPDATE `jobs` SET `previous_verdict` = `verdict`, `rejudge_reason` = 'upgrade',
  `verdict` = 'pending', `next_verify_at` = 0, `verify_attempts` = 0,
  `last_error` = NULL, `lease_owner` = NULL, `lease_until` = NULL,
  `updated_at` = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
WHERE `verdict` IN ('verified', 'partially_verified') AND (
  EXISTS (
    SELECT 1 FROM `chain_transactions` AS t,
      json_each(t.`facts`, '$.tokenInstructions') AS i
    WHERE t.`signature` IN (`jobs`.`escrow_tx`, `jobs`.`api_escrow_tx`,
        `jobs`.`settlement_tx`, `jobs`.`api_settlement_tx`)
      AND json_valid(t.`facts`)
      AND json_extract(i.`value`, '$.kind') IN ('transfer', 'transferChecked', 'transferCheckedWithFee', 'transferFeeExtension', 'burn', 'burnChecked')
      AND EXISTS (
        SELECT 1 FROM (SELECT json_extract(`value`, '$.account') AS `account`, json_extract(`value`, '$.owner') AS `owner`
        FROM json_each(t.`facts`, '$.tokenChanges')
      UNION ALL SELECT json_extract(`value`, '$.account'), json_extract(`value`, '$.owner')
        FROM json_each(t.`facts`, '$.ownersAfter')) AS o
        WHERE o.`account` = json_extract(i.`value`, '$.source') AND o.`owner` IS NOT NULL
          AND CASE WHEN json_extract(i.`value`, '$.authority') IS NOT NULL
            THEN json_extract(i.`value`, '$.authority') <> o.`owner`
            ELSE NOT EXISTS (SELECT 1 FROM json_each(i.`value`, '$.accounts') AS a WHERE a.`value` = o.`owner`)
          END
      )
  )
  OR EXISTS (
    SELECT 1 FROM `chain_transactions` AS e,
      json_each(e.`facts`, '$.tokenChanges') AS d,
      json_each(e.`facts`, '$.tokenChanges') AS c
    WHERE e.`signature` IN (`jobs`.`escrow_tx`, `jobs`.`api_escrow_tx`) AND json_valid(e.`facts`)
      AND json_extract(d.`value`, '$.delta') LIKE '-%'
      AND json_extract(c.`value`, '$.delta') NOT LIKE '-%'
      AND json_extract(d.`value`, '$.mint') = json_extract(c.`value`, '$.mint')
      AND json_extract(d.`value`, '$.owner') <> json_extract(c.`value`, '$.owner')
  )
  OR EXISTS (
    SELECT 1 FROM `chain_transactions` AS e, `chain_transactions` AS s
    WHERE e.`signature` IN (`jobs`.`escrow_tx`, `jobs`.`api_escrow_tx`) AND json_valid(e.`facts`)
      AND s.`signature` IN (`jobs`.`settlement_tx`, `jobs`.`api_settlement_tx`) AND json_valid(s.`facts`)
      AND EXISTS (
        SELECT 1 FROM (SELECT json_extract(`value`, '$.account') AS `account`, json_extract(`value`, '$.owner') AS `owner`
        FROM json_each(e.`facts`, '$.tokenChanges')
      UNION ALL SELECT json_extract(`value`, '$.account'), json_extract(`value`, '$.owner')
        FROM json_each(e.`facts`, '$.ownersAfter')) AS x,
          (SELECT json_extract(`value`, '$.account') AS `account`, json_extract(`value`, '$.owner') AS `owner`
        FROM json_each(s.`facts`, '$.tokenChanges')
      UNION ALL SELECT json_extract(`value`, '$.account'), json_extract(`value`, '$.owner')
        FROM json_each(s.`facts`, '$.ownersAfter')) AS y
        WHERE x.`account` = y.`account` AND x.`owner` <> y.`owner`
      )
  )
);
