-- How far the nightly runs have counted (src/db/schema.ts nightlyCountedThrough): a receipt
-- stamped before a window's end whose row was written after that window's run had counted was
-- counted by no night. A run's claim raises it; a receipt's row written after is recorded no
-- earlier. Empty until the first run after the upgrade claims.
CREATE TABLE `nightly_counted_through` (
	`id` integer PRIMARY KEY NOT NULL,
	`through` integer NOT NULL
);
