-- usage.consistent, and operator amounts that are present but unreadable: the reasoning and
-- rejected prediction tokens, the answer's size and tool calls the proxy saw (a bound on the
-- completion tokens it can hold), and the credits header and jobs API credits_charged as sent
-- when they are no credit amount (they failed nothing while stored as absent). Rows recorded
-- before keep these unknown.
ALTER TABLE "jobs" ADD COLUMN "credits_remaining_unread" text;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "reasoning_tokens" bigint;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "rejected_prediction_tokens" bigint;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "answer_bytes" bigint;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "answer_tool_calls" bigint;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "api_credits_charged_unread" text;--> statement-breakpoint
-- A job verified on usage that contradicts itself (more completion tokens than the total, or a
-- total below prompt + completion) is decided again (reopened as `reopenJobs` does). A total
-- above them is honest (thinking counted in the total alone) and prices nothing.
UPDATE "jobs" SET "verdict" = 'pending', "next_verify_at" = 0, "verify_attempts" = 0,
  "last_error" = NULL, "lease_owner" = NULL, "lease_until" = NULL,
  "updated_at" = (extract(epoch from clock_timestamp()) * 1000)::bigint
WHERE "verdict" IN ('verified', 'partially_verified')
  AND "completion_tokens" IS NOT NULL AND "total_tokens" IS NOT NULL
  AND ("completion_tokens" > "total_tokens"
    OR ("prompt_tokens" IS NOT NULL AND "total_tokens" < "prompt_tokens" + "completion_tokens"));
