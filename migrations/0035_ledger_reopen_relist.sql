-- Lines whose transaction also moved the vault's address in another mint took an InitializeAccount
-- naming the vault as a new account's owner for the vault opened again in that mint: a credit
-- payout by a plain Transfer after it vanished. Read again (from the stored transaction, parsed
-- anew for the account each InitializeAccount makes); one that now shows a payout counts as listed
-- then, so the next nightly run judges it.
UPDATE `ledger_lines` SET `state` = 'listed'
WHERE `state` = 'read' AND `succeeded` = 1 AND `foreign_changes` IS NOT NULL;
