CREATE TABLE `credit_vaults` (
	`key_fingerprint` text PRIMARY KEY NOT NULL,
	`vault` text NOT NULL,
	`source` text NOT NULL,
	`job_id` text,
	`pinned_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `profile_pins` (
	`profile` text NOT NULL,
	`name` text NOT NULL,
	`value` text NOT NULL,
	`evidence` integer NOT NULL,
	`pinned_at` integer NOT NULL,
	PRIMARY KEY(`profile`, `name`)
);
--> statement-breakpoint
CREATE TABLE `treasury_evidence` (
	`profile` text NOT NULL,
	`signature` text NOT NULL,
	`address` text NOT NULL,
	`job_id` text NOT NULL,
	`seen_at` integer NOT NULL,
	PRIMARY KEY(`profile`, `signature`)
);
--> statement-breakpoint
CREATE INDEX `treasury_evidence_address` ON `treasury_evidence` (`profile`,`address`);--> statement-breakpoint
ALTER TABLE `jobs` ADD `response_model` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `credit_vault` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `unproven` text;--> statement-breakpoint
CREATE INDEX `jobs_api_escrow_tx` ON `jobs` (`api_escrow_tx`);--> statement-breakpoint
-- Verdicts reached before these checks existed are judged again (from stored facts, no RPC).
UPDATE `jobs` SET `verdict` = 'pending', `next_verify_at` = 0 WHERE `verdict` = 'verified';
