CREATE TABLE `ledger_cursors` (
	`vault` text PRIMARY KEY NOT NULL,
	`newest_signature` text,
	`newest_slot` integer,
	`sync_top` text,
	`sync_top_slot` integer,
	`sync_before` text,
	`sync_number` integer DEFAULT 0 NOT NULL,
	`sync_index` integer DEFAULT 0 NOT NULL,
	`pages_read` integer DEFAULT 0 NOT NULL,
	`balance_units` integer,
	`balance_slot` integer,
	`balance_at` integer,
	`synced_at` integer,
	`last_error` text,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `ledger_lines` (
	`vault` text NOT NULL,
	`signature` text NOT NULL,
	`ord` integer NOT NULL,
	`slot` integer NOT NULL,
	`block_time` integer,
	`state` text DEFAULT 'listed' NOT NULL,
	`succeeded` integer,
	`pre_units` integer,
	`post_units` integer,
	`delta_units` integer,
	`memo` text,
	`memo_kind` text,
	`memo_job_id` text,
	`listed_at` integer NOT NULL,
	PRIMARY KEY(`vault`, `signature`)
);
--> statement-breakpoint
CREATE INDEX `ledger_lines_order` ON `ledger_lines` (`vault`,`ord`);--> statement-breakpoint
CREATE INDEX `ledger_lines_time` ON `ledger_lines` (`vault`,`block_time`);--> statement-breakpoint
CREATE INDEX `ledger_lines_state` ON `ledger_lines` (`state`,`vault`);--> statement-breakpoint
CREATE INDEX `ledger_lines_memo_job` ON `ledger_lines` (`memo_job_id`);--> statement-breakpoint
CREATE INDEX `ledger_lines_vault_memo` ON `ledger_lines` (`vault`,`memo_kind`,`delta_units`,`memo_job_id`);