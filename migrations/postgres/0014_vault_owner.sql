-- The owner of a credit vault after each transaction that names it, when it is not the escrow
-- authority (a SetAuthority gave the vault to someone else), and the delegate an Approve naming
-- the vault gave it: statement findings (see schema.ts). Lines read before keep what they were
-- read as.
ALTER TABLE "ledger_lines" ADD COLUMN "other_owner" text;--> statement-breakpoint
ALTER TABLE "ledger_lines" ADD COLUMN "delegate" text;--> statement-breakpoint
CREATE INDEX "ledger_lines_other_owner" ON "ledger_lines" USING btree ("vault","block_time") WHERE "ledger_lines"."other_owner" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "ledger_lines_delegate" ON "ledger_lines" USING btree ("vault","block_time") WHERE "ledger_lines"."delegate" IS NOT NULL;