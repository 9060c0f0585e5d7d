ALTER TABLE "jobs" ADD COLUMN "request_method" text;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "request_path" text;