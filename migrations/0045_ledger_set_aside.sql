ALTER TABLE `ledger_lines` ADD `set_aside` text;--> statement-breakpoint
CREATE INDEX `ledger_lines_set_aside` ON `ledger_lines` (`vault`,`block_time`) WHERE "ledger_lines"."set_aside" IS NOT NULL;