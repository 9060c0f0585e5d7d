-- usage.consistent, and operator amounts that are present but unreadable: the reasoning and
-- rejected prediction tokens, the answer's size and tool calls the proxy saw (a bound on the
-- completion tokens it can hold), and the credits header and jobs API credits_charged as sent
-- when they are no credit amount (they failed nothing while stored as absent). Rows recorded
-- before keep these unknown.
ALTER TABLE `jobs` ADD `credits_remaining_unread` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `reasoning_tokens` integer;--> statement-breakpoint
ALTER TABLE `jobs` ADD `rejected_prediction_tokens` integer;--> statement-breakpoint
ALTER TABLE `jobs` ADD `answer_bytes` integer;--> statement-breakpoint
ALTER TABLE `jobs` ADD `answer_tool_calls` integer;--> statement-breakpoint
ALTER TABLE `jobs` ADD `api_credits_charged_unread` text;--> statement-breakpoint
-- A job verified on usage that contradicts itself (more completion tokens than the total, or a
-- total below prompt + completion) is decided again (reopened as `reopenJobs` does). A total
-- above them is honest (thinking counted in the total alone) and prices nothing.
UPDATE `jobs` SET `verdict` = 'pending', `next_verify_at` = 0, `verify_attempts` = 0,
  `last_error` = NULL, `lease_owner` = NULL, `lease_until` = NULL,
  `updated_at` = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
WHERE `verdict` IN ('verified', 'partially_verified')
  AND `completion_tokens` IS NOT NULL AND `total_tokens` IS NOT NULL
  AND (`completion_tokens` > `total_tokens`
    OR (`prompt_tokens` IS NOT NULL AND `total_tokens` < `prompt_tokens` + `completion_tokens`));
