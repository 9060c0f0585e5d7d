ALTER TABLE "jobs" ADD COLUMN "receipt_writer" text;--> statement-breakpoint
CREATE INDEX "jobs_open_receipts" ON "jobs" USING btree ("receipt_writer") WHERE "jobs"."capture_state" = 'open';