-- Lines read before the vault's token balances were held to the accounts they name: a node
-- leaving the vault out of a theft's balances (or showing it unchanged) made the theft read as
-- a payout hidden by money in, a deposit nothing made (`hidden_debit_units`), and one naming the
-- vault before and not after made it read as emptied, its whole balance paid out. Both are read
-- again (from the stored answer, else fetched); until then the statement counts them as not
-- read (not complete).
UPDATE `ledger_lines` SET `state` = 'listed'
WHERE `state` = 'read' AND `succeeded` = 1
  AND (`hidden_debit_units` IS NOT NULL OR (`post_units` = 0 AND `delta_units` < 0));
