ALTER TABLE `jobs` ADD `receipt_writer` text;--> statement-breakpoint
CREATE INDEX `jobs_open_receipts` ON `jobs` (`receipt_writer`) WHERE "jobs"."capture_state" = 'open';