CREATE TABLE `escrow_scans` (
	`vault` text PRIMARY KEY NOT NULL,
	`newest_signature` text,
	`newest_slot` integer,
	`sync_top` text,
	`sync_top_slot` integer,
	`sync_before` text,
	`kept` integer DEFAULT 0 NOT NULL,
	`updated_at` integer NOT NULL
);
