CREATE TABLE `account_snapshots` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`taken_at` integer NOT NULL,
	`key_fingerprint` text NOT NULL,
	`vault` text,
	`credits_remaining` integer,
	`usdc_value_units` integer,
	`vault_units` integer,
	`vault_slot` integer,
	`credits_difference` integer,
	`usdc_difference_units` integer,
	`error` text
);
--> statement-breakpoint
CREATE INDEX `account_snapshots_vault_taken` ON `account_snapshots` (`vault`,`taken_at`);