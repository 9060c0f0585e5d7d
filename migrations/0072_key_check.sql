-- `key_check`: the second 64 bits of the SHA-256 of the caller's API key, recorded beside its
-- fingerprint (the first 64). Two receipts of one fingerprint naming two key checks are two keys
-- the operator made to share a fingerprint. Null on the rows recorded before it.
ALTER TABLE `jobs` ADD `key_check` text;--> statement-breakpoint
CREATE INDEX `jobs_key_check` ON `jobs` (`key_fingerprint`,`key_check`) WHERE "jobs"."key_check" is not null;
