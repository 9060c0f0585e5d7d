ALTER TABLE `ledger_lines` ADD `deposit_in_units` integer;--> statement-breakpoint
CREATE INDEX `ledger_lines_deposit_in` ON `ledger_lines` (`vault`,`block_time`) WHERE "ledger_lines"."deposit_in_units" IS NOT NULL;--> statement-breakpoint
-- Lines read before money escrow did not pay in was told apart from a return: a customer's
-- top-up under a job's refund memo counted whole as that job's return and released its lock.
-- Money in naming a job is read again; until then the statement counts it as not read.
UPDATE `ledger_lines` SET `state` = 'listed'
WHERE `state` = 'read' AND `succeeded` = 1 AND `delta_units` > 0
  AND (`memo_kind` IS NOT NULL OR `memo_jobs` IS NOT NULL OR `kind` = 'return');
