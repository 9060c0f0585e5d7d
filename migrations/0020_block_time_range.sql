-- Block times an endpoint gave that the chain cannot have (before 2020, or more than 300 s past
-- this machine's clock) are no longer accepted; earlier versions stored them. One no date holds
-- made every statement and nightly run throw, and a future one kept a vault "read through" a
-- date the node never listed. Stored ones become unknown: a ledger's read-through time is set
-- again by its next sync, a line's time stays unknown, and a transaction is fetched again.
UPDATE `ledger_cursors` SET `final_through` = NULL
WHERE `final_through` < 1577836800000
  OR `final_through` > (CAST(strftime('%s', 'now') AS INTEGER) + 300) * 1000;--> statement-breakpoint
UPDATE `ledger_cursors` SET `sync_final_through` = NULL
WHERE `sync_final_through` < 1577836800000
  OR `sync_final_through` > (CAST(strftime('%s', 'now') AS INTEGER) + 300) * 1000;--> statement-breakpoint
UPDATE `ledger_lines` SET `block_time` = NULL
WHERE `block_time` < 1577836800
  OR `block_time` > CAST(strftime('%s', 'now') AS INTEGER) + 300;--> statement-breakpoint
UPDATE `chain_transactions` SET `facts` = NULL, `raw` = NULL, `block_time` = NULL, `fetched_at` = NULL
WHERE `state` = 'finalized' AND (`block_time` < 1577836800
  OR `block_time` > CAST(strftime('%s', 'now') AS INTEGER) + 300);
