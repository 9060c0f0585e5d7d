-- Lines read before the vault's balances were held against the instructions a node served: a
-- payout made inside a call the node left out of `meta.innerInstructions` (served as `[]`, or
-- its groups listed under other instructions) read as a smaller deposit, with no finding. Only
-- money seen going into the vault can hide one: lines whose stored transaction shows a movement
-- into it (or facts kept before movements' amounts were) are read again; until then the
-- statement counts them as not read (not complete).
UPDATE `ledger_lines` SET `state` = 'listed'
WHERE `state` = 'read' AND `succeeded` = 1 AND EXISTS (
  SELECT 1 FROM `chain_transactions` AS t,
    json_each(CASE WHEN json_valid(t.`facts`) THEN t.`facts` END, '$.tokenInstructions') AS i
  WHERE t.`signature` = `ledger_lines`.`signature` AND (
    json_extract(i.`value`, '$.destination') = `ledger_lines`.`vault`
    OR (json_extract(i.`value`, '$.kind') IN ('transfer', 'transferChecked',
          'transferCheckedWithFee', 'mintTo', 'mintToChecked')
        AND json_extract(i.`value`, '$.amount') IS NULL)
  )
);
