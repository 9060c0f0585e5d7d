-- Lines read from a transaction a node served without inner instructions: a payout of the vault's
-- money made inside another program's call was not in its facts. Read again (from the stored
-- transaction when it shows no program that could call the token program, else fetched again);
-- until then the statement counts them as not read (not complete).
UPDATE `ledger_lines` SET `state` = 'listed'
WHERE `state` = 'read' AND `succeeded` = 1 AND `signature` IN (
  SELECT `signature` FROM `chain_transactions`
  WHERE CASE WHEN json_valid(`facts`) THEN json_extract(`facts`, '$.innerInstructionsKnown') END = 0
);
