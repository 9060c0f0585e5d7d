CREATE TABLE `access_tokens` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`role` text NOT NULL,
	`token_hash` text NOT NULL,
	`created_at` integer NOT NULL,
	`last_used_at` integer,
	`revoked_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `access_tokens_token_hash_unique` ON `access_tokens` (`token_hash`);--> statement-breakpoint
CREATE TABLE `chain_transactions` (
	`signature` text PRIMARY KEY NOT NULL,
	`state` text DEFAULT 'unknown' NOT NULL,
	`commitment` text,
	`slot` integer,
	`block_time` integer,
	`fee_lamports` integer,
	`succeeded` integer,
	`err` text,
	`facts` text,
	`raw` text,
	`first_seen_at` integer NOT NULL,
	`status_checked_at` integer,
	`fetched_at` integer,
	`not_found_since` integer,
	`not_found_count` integer DEFAULT 0 NOT NULL,
	`not_found_slot` integer
);
--> statement-breakpoint
CREATE INDEX `chain_transactions_state` ON `chain_transactions` (`state`);--> statement-breakpoint
CREATE TABLE `check_results` (
	`job_id` text NOT NULL,
	`name` text NOT NULL,
	`outcome` text NOT NULL,
	`reason` text,
	`expected` text,
	`actual` text,
	`run_id` integer,
	`checked_at` integer NOT NULL,
	PRIMARY KEY(`job_id`, `name`),
	FOREIGN KEY (`job_id`) REFERENCES `jobs`(`job_id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `check_results_failing` ON `check_results` (`outcome`,`name`);--> statement-breakpoint
CREATE TABLE `jobs` (
	`job_id` text PRIMARY KEY NOT NULL,
	`source` text NOT NULL,
	`escrow_tx` text,
	`settlement_tx` text,
	`worker` text,
	`credits_remaining_units` integer,
	`model` text,
	`prompt_tokens` integer,
	`completion_tokens` integer,
	`total_tokens` integer,
	`max_tokens` integer,
	`stream` integer,
	`http_status` integer,
	`latency_ms` integer,
	`ttfb_ms` integer,
	`key_fingerprint` text,
	`tags` text DEFAULT '{}' NOT NULL,
	`capture_state` text DEFAULT 'complete' NOT NULL,
	`receipt_hash` text NOT NULL,
	`created_at` integer NOT NULL,
	`recorded_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`api_status` text,
	`api_credits_charged_units` integer,
	`api_escrow_tx` text,
	`api_settlement_tx` text,
	`api_worker` text,
	`api_response` text,
	`api_checked_at` integer,
	`backfill_state` text,
	`backfill_attempts` integer DEFAULT 0 NOT NULL,
	`backfill_next_at` integer,
	`verdict` text DEFAULT 'pending' NOT NULL,
	`verdict_at` integer,
	`verify_attempts` integer DEFAULT 0 NOT NULL,
	`next_verify_at` integer DEFAULT 0 NOT NULL,
	`lease_owner` text,
	`lease_until` integer,
	`last_error` text,
	`commitment` text,
	`escrowed_units` integer,
	`charged_units` integer,
	`worker_paid_units` integer,
	`treasury_paid_units` integer,
	`refunded_units` integer,
	`expected_charge_units` integer,
	`fees_lamports` integer
);
--> statement-breakpoint
CREATE INDEX `jobs_created_at` ON `jobs` (`created_at`);--> statement-breakpoint
CREATE INDEX `jobs_verdict_next` ON `jobs` (`verdict`,`next_verify_at`);--> statement-breakpoint
CREATE INDEX `jobs_escrow_tx` ON `jobs` (`escrow_tx`);--> statement-breakpoint
CREATE INDEX `jobs_settlement_tx` ON `jobs` (`settlement_tx`);--> statement-breakpoint
CREATE INDEX `jobs_api_settlement_tx` ON `jobs` (`api_settlement_tx`);--> statement-breakpoint
CREATE INDEX `jobs_worker_created` ON `jobs` (`worker`,`created_at`);--> statement-breakpoint
CREATE INDEX `jobs_model_created` ON `jobs` (`model`,`created_at`);--> statement-breakpoint
CREATE INDEX `jobs_key_created` ON `jobs` (`key_fingerprint`,`created_at`);--> statement-breakpoint
CREATE INDEX `jobs_backfill` ON `jobs` (`backfill_state`,`backfill_next_at`);--> statement-breakpoint
CREATE INDEX `jobs_report_day` ON `jobs` ("created_at" / 86400000,`verdict`,`created_at`,`charged_units`,`escrowed_units`,`worker_paid_units`,`treasury_paid_units`,`refunded_units`,`fees_lamports`);--> statement-breakpoint
CREATE INDEX `jobs_report_model` ON `jobs` (`model`,`verdict`,`created_at`,`charged_units`,`escrowed_units`,`worker_paid_units`,`treasury_paid_units`,`refunded_units`,`fees_lamports`);--> statement-breakpoint
CREATE INDEX `jobs_report_worker` ON `jobs` (`worker`,`verdict`,`created_at`,`charged_units`,`escrowed_units`,`worker_paid_units`,`treasury_paid_units`,`refunded_units`,`fees_lamports`);--> statement-breakpoint
CREATE INDEX `jobs_report_key` ON `jobs` (`key_fingerprint`,`verdict`,`created_at`,`charged_units`,`escrowed_units`,`worker_paid_units`,`treasury_paid_units`,`refunded_units`,`fees_lamports`);--> statement-breakpoint
CREATE INDEX `jobs_verdict_created` ON `jobs` (`verdict`,`created_at`);--> statement-breakpoint
CREATE TABLE `locks` (
	`name` text PRIMARY KEY NOT NULL,
	`owner` text NOT NULL,
	`acquired_at` integer NOT NULL,
	`expires_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `receipt_conflicts` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`job_id` text NOT NULL,
	`source` text NOT NULL,
	`receipt` text NOT NULL,
	`differences` text NOT NULL,
	`received_at` integer NOT NULL,
	FOREIGN KEY (`job_id`) REFERENCES `jobs`(`job_id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `receipt_conflicts_job` ON `receipt_conflicts` (`job_id`);--> statement-breakpoint
CREATE TABLE `verification_runs` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`trigger` text NOT NULL,
	`status` text NOT NULL,
	`window_from` integer,
	`window_to` integer,
	`started_at` integer NOT NULL,
	`finished_at` integer,
	`owner` text NOT NULL,
	`summary` text
);
--> statement-breakpoint
CREATE INDEX `verification_runs_started` ON `verification_runs` (`started_at`);