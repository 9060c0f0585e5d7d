DROP INDEX "jobs_escrow_tx";--> statement-breakpoint
DROP INDEX "jobs_settlement_tx";--> statement-breakpoint
DROP INDEX "jobs_api_escrow_tx";--> statement-breakpoint
DROP INDEX "jobs_api_settlement_tx";--> statement-breakpoint
DROP INDEX "jobs_backfill";--> statement-breakpoint
CREATE INDEX "jobs_escrow_tx" ON "jobs" USING btree ("escrow_tx") WHERE "jobs"."escrow_tx" is not null;--> statement-breakpoint
CREATE INDEX "jobs_settlement_tx" ON "jobs" USING btree ("settlement_tx") WHERE "jobs"."settlement_tx" is not null;--> statement-breakpoint
CREATE INDEX "jobs_api_escrow_tx" ON "jobs" USING btree ("api_escrow_tx") WHERE "jobs"."api_escrow_tx" IS NOT NULL AND "jobs"."api_escrow_tx" IS DISTINCT FROM "jobs"."escrow_tx";--> statement-breakpoint
CREATE INDEX "jobs_api_settlement_tx" ON "jobs" USING btree ("api_settlement_tx") WHERE "jobs"."api_settlement_tx" IS NOT NULL AND "jobs"."api_settlement_tx" IS DISTINCT FROM "jobs"."settlement_tx";--> statement-breakpoint
CREATE INDEX "jobs_backfill" ON "jobs" USING btree ("backfill_state","backfill_next_at") WHERE "jobs"."backfill_state" is not null;