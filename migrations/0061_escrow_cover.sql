ALTER TABLE `escrow_scans` ADD `covered_slot` integer;--> statement-breakpoint
ALTER TABLE `escrow_scans` ADD `sync_covered_slot` integer;