ALTER TABLE "escrow_scans" ADD COLUMN "covered_slot" bigint;--> statement-breakpoint
ALTER TABLE "escrow_scans" ADD COLUMN "sync_covered_slot" bigint;