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
