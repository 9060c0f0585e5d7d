PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_escrow_pending` (
	`job_id` text NOT NULL,
	`signature` text NOT NULL,
	`vault` text NOT NULL,
	`block_time` integer,
	`listed_at` integer NOT NULL,
	`unread` text,
	`disagreement` text,
	PRIMARY KEY(`job_id`, `signature`, `vault`)
);
--> statement-breakpoint
INSERT INTO `__new_escrow_pending`("job_id", "signature", "vault", "block_time", "listed_at", "unread", "disagreement") SELECT "job_id", "signature", "vault", "block_time", "listed_at", "unread", "disagreement" FROM `escrow_pending`;--> statement-breakpoint
DROP TABLE `escrow_pending`;--> statement-breakpoint
ALTER TABLE `__new_escrow_pending` RENAME TO `escrow_pending`;--> statement-breakpoint
PRAGMA foreign_keys=ON;--> statement-breakpoint
CREATE INDEX `escrow_pending_listed` ON `escrow_pending` (`listed_at`);