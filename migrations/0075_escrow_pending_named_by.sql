ALTER TABLE `escrow_pending` ADD `named_by` text;--> statement-breakpoint
CREATE INDEX `escrow_pending_unmarked` ON `escrow_pending` (`listed_at`) WHERE "escrow_pending"."named_by" IS NULL;