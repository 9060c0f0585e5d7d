-- Lines whose transaction also moved the vault's address in another mint were read with no
-- hidden payout when the vault held no credits before or after it (a plain Transfer names no
-- mint): credits paid out there vanished. Read again (from the stored transaction); one that now
-- shows a payout counts as listed then, so the next nightly run judges it.
UPDATE `ledger_lines` SET `state` = 'listed'
WHERE `state` = 'read' AND `succeeded` = 1 AND `foreign_changes` IS NOT NULL;
