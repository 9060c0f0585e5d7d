-- How far the nightly runs have counted (src/db/pg/schema.ts nightlyCountedThrough): a receipt
-- stamped before a window's end whose row was written after that window's run had counted was
-- counted by no night. A run's claim raises it; a receipt's row written after is recorded no
-- earlier. Empty until the first run after the upgrade claims.
CREATE TABLE "nightly_counted_through" (
	"id" bigint PRIMARY KEY NOT NULL,
	"through" bigint NOT NULL
);
