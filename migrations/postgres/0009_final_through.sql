-- How far the chain had finalized when a vault's history was listed (see schema.ts): a
-- period counts as read only once the chain's finalized block time has passed its end. Cursors
-- synced before have none: their next sync sets it.
ALTER TABLE "ledger_cursors" ADD COLUMN "final_through" bigint;--> statement-breakpoint
ALTER TABLE "ledger_cursors" ADD COLUMN "sync_final_through" bigint;