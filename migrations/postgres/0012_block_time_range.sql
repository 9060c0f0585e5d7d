-- Block times an endpoint gave that the chain cannot have (before 2020, or more than a day past
-- this machine's clock: BLOCK_TIME_AHEAD_SECONDS in src/chain/block-time.ts; a time no date
-- holds is past that too) are no longer accepted; earlier versions stored them. One no date
-- holds made every statement and nightly run throw, and a future one kept a vault "read
-- through" a date the node never listed. The bound is a day so that a host clock minutes or
-- hours slow at the upgrade clears no good time. Stored ones become unknown: a ledger's
-- read-through time is set again by its next sync, a transaction is fetched again, and a line
-- goes back to `listed`, so the next sync reads its transaction and dates it again. A vault's
-- judged mark is lowered to the newest good time below such a line (its true time is no
-- earlier), so the next nightly run judges it whatever date it gets.
UPDATE "ledger_cursors" SET "final_through" = NULL
WHERE "final_through" < 1577836800000
  OR "final_through" > (floor(extract(epoch FROM now()))::bigint + 86400) * 1000;--> statement-breakpoint
UPDATE "ledger_cursors" SET "sync_final_through" = NULL
WHERE "sync_final_through" < 1577836800000
  OR "sync_final_through" > (floor(extract(epoch FROM now()))::bigint + 86400) * 1000;--> statement-breakpoint
UPDATE "ledger_cursors" SET "judged_through" = least("judged_through", (
  SELECT coalesce(max("good"."block_time"), 0) * 1000 FROM "ledger_lines" "good"
  WHERE "good"."vault" = "ledger_cursors"."vault"
    AND "good"."block_time" BETWEEN 1577836800 AND floor(extract(epoch FROM now()))::bigint + 86400
    AND "good"."slot" <= (SELECT min("bad"."slot") FROM "ledger_lines" "bad"
      WHERE "bad"."vault" = "ledger_cursors"."vault" AND ("bad"."block_time" < 1577836800
        OR "bad"."block_time" > floor(extract(epoch FROM now()))::bigint + 86400))))
WHERE "judged_through" IS NOT NULL AND EXISTS (SELECT 1 FROM "ledger_lines" "bad"
  WHERE "bad"."vault" = "ledger_cursors"."vault" AND ("bad"."block_time" < 1577836800
    OR "bad"."block_time" > floor(extract(epoch FROM now()))::bigint + 86400));--> statement-breakpoint
UPDATE "ledger_lines" SET "state" = 'listed', "block_time" = NULL, "kind" = NULL, "job_id" = NULL,
  "listed_at" = floor(extract(epoch FROM now()) * 1000)::bigint
WHERE "block_time" < 1577836800
  OR "block_time" > floor(extract(epoch FROM now()))::bigint + 86400;--> statement-breakpoint
UPDATE "chain_transactions" SET "facts" = NULL, "raw" = NULL, "block_time" = NULL, "fetched_at" = NULL
WHERE "state" = 'finalized' AND ("block_time" < 1577836800
  OR "block_time" > floor(extract(epoch FROM now()))::bigint + 86400);
