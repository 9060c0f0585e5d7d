ALTER TABLE `ledger_lines` ADD `hidden_debit_units` integer;--> statement-breakpoint
CREATE INDEX `ledger_lines_hidden_debit` ON `ledger_lines` (`vault`,`block_time`) WHERE "ledger_lines"."hidden_debit_units" IS NOT NULL;--> statement-breakpoint
-- Lines read before `hidden_debit_units` was kept are read again (from the stored transaction,
-- re-parsed from its raw answer, or fetched again): a payout hidden by money in of the same
-- transaction is known only from its instructions. Their kind is kept until then, so the daily
-- sums stay whole; the statement counts them as not read meanwhile (not complete).
UPDATE `ledger_lines` SET `state` = 'listed' WHERE `state` = 'read' AND `succeeded` = 1;
