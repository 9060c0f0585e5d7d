CREATE TABLE "escrow_pending" (
	"job_id" text NOT NULL,
	"signature" text NOT NULL,
	"vault" text NOT NULL,
	"block_time" bigint,
	"listed_at" bigint NOT NULL,
	CONSTRAINT "escrow_pending_job_id_signature_pk" PRIMARY KEY("job_id","signature")
);
--> statement-breakpoint
CREATE TABLE "escrow_scans" (
	"vault" text PRIMARY KEY NOT NULL,
	"newest_signature" text,
	"newest_slot" bigint,
	"sync_top" text,
	"sync_top_slot" bigint,
	"sync_before" text,
	"kept" bigint DEFAULT 0 NOT NULL,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE INDEX "escrow_pending_listed" ON "escrow_pending" USING btree ("listed_at");