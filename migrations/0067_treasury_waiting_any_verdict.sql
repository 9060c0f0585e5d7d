DROP INDEX `jobs_treasury_waiting`;--> statement-breakpoint
CREATE INDEX `jobs_treasury_waiting` ON `jobs` (`created_at`) WHERE "jobs"."verdict" IN ('partially_verified', 'discrepancy', 'dropped', 'unverifiable') AND "jobs"."unproven" LIKE '%"treasury_unknown"%';--> statement-breakpoint
-- A verdict failing for another reason (a discrepancy, dropped, unverifiable) judged while the
-- treasury was learned counted the settlement's one payee besides the worker and the credit vault
-- as the treasury's pay, and was never decided again once the treasury was learned: its treasury
-- figure kept that payee's money for good. Such verdicts are judged again ('upgrade', as
-- `reopenJobs` does); they now keep the treasury's gap until it is learned (`waitsForTreasury`).
UPDATE `jobs` SET `previous_verdict` = `verdict`, `rejudge_reason` = 'upgrade',
  `verdict` = 'pending', `next_verify_at` = 0, `verify_attempts` = 0,
  `last_error` = NULL, `lease_owner` = NULL, `lease_until` = NULL,
  `updated_at` = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
WHERE `verdict` IN ('discrepancy', 'dropped', 'unverifiable') AND EXISTS (
  SELECT 1 FROM `check_results` AS c
  WHERE c.`job_id` = `jobs`.`job_id` AND c.`name` = 'settlement.recipients'
    AND c.`outcome` = 'skip' AND c.`reason` LIKE 'the treasury is not known yet%'
);
