CREATE TABLE `nightly_turned` (
	`job_id` text PRIMARY KEY NOT NULL,
	`verdict` text NOT NULL,
	`previous_verdict` text NOT NULL,
	`turned_at` integer NOT NULL
);
