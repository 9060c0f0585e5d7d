-- Jobs judged before these rules are looked at again (reopened as `reopenJobs` does):
-- - an answer outside 2xx gave no completion, so a settlement of it charged for nothing;
-- - a job the jobs API calls failed charged nothing;
-- - a signature several jobs name belongs to one of them: a replay judged before the job it
--   copies kept the money (the receipt that now comes later reopens it; these came earlier);
-- - a receipt dated far from its lock's block time (receipt.time) put money in another period.
WITH `named` (`job_id`, `sig`) AS (
  SELECT `job_id`, `escrow_tx` FROM `jobs` WHERE `escrow_tx` IS NOT NULL
  UNION SELECT `job_id`, `settlement_tx` FROM `jobs` WHERE `settlement_tx` IS NOT NULL
  UNION SELECT `job_id`, `api_escrow_tx` FROM `jobs` WHERE `api_escrow_tx` IS NOT NULL
  UNION SELECT `job_id`, `api_settlement_tx` FROM `jobs` WHERE `api_settlement_tx` IS NOT NULL
), `shared` AS (
  SELECT `sig` FROM `named` GROUP BY `sig` HAVING count(DISTINCT `job_id`) > 1
)
UPDATE `jobs` SET `verdict` = 'pending', `next_verify_at` = 0, `verify_attempts` = 0,
  `last_error` = NULL, `lease_owner` = NULL, `lease_until` = NULL,
  `updated_at` = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
WHERE `verdict` IN ('verified', 'partially_verified', 'discrepancy', 'unverifiable')
  AND ((`verdict` IN ('verified', 'partially_verified')
      AND ((`http_status` IS NOT NULL AND (`http_status` < 200 OR `http_status` > 299))
        OR `api_status` = 'failed'))
    OR `job_id` IN (SELECT `job_id` FROM `named` WHERE `sig` IN (SELECT `sig` FROM `shared`))
    OR EXISTS (SELECT 1 FROM `chain_transactions` `t`
      WHERE `t`.`signature` = `jobs`.`escrow_tx` AND `t`.`block_time` IS NOT NULL
        AND (`jobs`.`created_at` / 1000 < `t`.`block_time` - 600
          OR `jobs`.`created_at` / 1000 > `t`.`block_time` + 720)));--> statement-breakpoint
-- Jobs due at once (0) count as due since their last write (readiness, the status page): those
-- an earlier upgrade reopened (0014) were written when they were judged, long before.
UPDATE `jobs` SET `updated_at` = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
WHERE `next_verify_at` = 0 AND `verdict` IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement');
