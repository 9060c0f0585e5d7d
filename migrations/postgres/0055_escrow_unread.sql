ALTER TABLE "escrow_pending" ADD COLUMN "unread" text;--> statement-breakpoint
ALTER TABLE "escrow_pending" ADD COLUMN "disagreement" json;