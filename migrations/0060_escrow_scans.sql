CREATE TABLE `escrow_scans` (
	`vault` text PRIMARY KEY NOT NULL,
	`newest_signature` text NOT NULL,
	`newest_slot` integer NOT NULL,
	`kept` integer DEFAULT 0 NOT NULL,
	`last_error` text,
	`updated_at` integer NOT NULL
);
