CREATE TABLE "escrow_scans" (
	"vault" text PRIMARY KEY NOT NULL,
	"newest_signature" text NOT NULL,
	"newest_slot" bigint NOT NULL,
	"kept" bigint DEFAULT 0 NOT NULL,
	"last_error" text,
	"updated_at" bigint NOT NULL
);
