CREATE TABLE `job_conflict_signatures` (
	`signature` text NOT NULL,
	`job_id` text NOT NULL,
	PRIMARY KEY(`signature`, `job_id`),
	FOREIGN KEY (`job_id`) REFERENCES `jobs`(`job_id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `job_conflict_signatures_job` ON `job_conflict_signatures` (`job_id`);