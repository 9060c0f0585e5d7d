-- The vault's owner after each transaction whenever the transaction shows it, else null: a
-- transaction with no token program among its keys carries no token balances, and its line must
-- not read as "the escrow authority owns it" (see schema.ts). Lines read before stay null; the
-- vault's owner now falls back to their other_owner while no line knows its owner.
ALTER TABLE "ledger_lines" ADD COLUMN "owner_after" text;--> statement-breakpoint
CREATE INDEX "ledger_lines_owner_after" ON "ledger_lines" USING btree ("vault","ord") WHERE "ledger_lines"."owner_after" IS NOT NULL;
