CREATE TABLE `escrow_pending` (
	`job_id` text NOT NULL,
	`signature` text NOT NULL,
	`vault` text NOT NULL,
	`block_time` integer,
	`listed_at` integer NOT NULL,
	PRIMARY KEY(`job_id`, `signature`)
);
--> statement-breakpoint
CREATE INDEX `escrow_pending_listed` ON `escrow_pending` (`listed_at`);--> statement-breakpoint
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
