-- The vault's owner after each transaction whenever the transaction shows it, else null: a
-- transaction with no token program among its keys carries no token balances, and its line must
-- not read as "the escrow authority owns it" (see schema.ts). A line read before that names
-- another owner knew it: it keeps it. One read before that names none stays unknown (the owner
-- is known again from the next line that shows it).
ALTER TABLE `ledger_lines` ADD `owner_after` text;--> statement-breakpoint
UPDATE `ledger_lines` SET `owner_after` = `other_owner` WHERE `other_owner` IS NOT NULL;--> statement-breakpoint
CREATE INDEX `ledger_lines_owner_after` ON `ledger_lines` (`vault`,`ord`) WHERE "ledger_lines"."owner_after" IS NOT NULL;
