-- A credit vault's address can move another mint (closed and opened again in a fake mint,
-- say): such movements are kept apart from the credit movements, as findings (see schema.ts).
-- Lines read before keep what they were read as.
ALTER TABLE `ledger_cursors` ADD `balance_foreign` text;--> statement-breakpoint
ALTER TABLE `ledger_lines` ADD `foreign_changes` text;--> statement-breakpoint
CREATE INDEX `ledger_lines_foreign` ON `ledger_lines` (`vault`,`block_time`) WHERE "ledger_lines"."foreign_changes" IS NOT NULL;