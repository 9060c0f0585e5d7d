ALTER TABLE `escrow_pending` ADD `unread` text;--> statement-breakpoint
ALTER TABLE `escrow_pending` ADD `disagreement` text;