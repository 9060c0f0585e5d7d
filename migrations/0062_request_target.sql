ALTER TABLE `jobs` ADD `request_method` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `request_path` text;