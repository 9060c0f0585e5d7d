-- `job_conflict_signatures` holds each signature of each job's `conflict_signatures` list, kept
-- by triggers whichever writer changes the list (a conflicting receipt, a jobs API answer that
-- stopped naming a step, a ledger line kept with its memo's job). A transaction named only
-- there had no owner: a payout with no memo that only a job's conflicting receipt names was in
-- no job's figures, and a receipt naming such a signature later did not send that job back.
CREATE TRIGGER `jobs_conflict_signatures_insert` AFTER INSERT ON `jobs`
WHEN json_type(NEW.conflict_signatures) = 'array'
BEGIN
  INSERT OR IGNORE INTO job_conflict_signatures (signature, job_id)
  SELECT value, NEW.job_id FROM json_each(NEW.conflict_signatures) WHERE type = 'text';
END;
--> statement-breakpoint
CREATE TRIGGER `jobs_conflict_signatures_update` AFTER UPDATE OF conflict_signatures ON `jobs`
WHEN NEW.conflict_signatures IS NOT OLD.conflict_signatures
BEGIN
  DELETE FROM job_conflict_signatures WHERE job_id = NEW.job_id;
  INSERT OR IGNORE INTO job_conflict_signatures (signature, job_id)
  SELECT value, NEW.job_id FROM json_each(CASE WHEN json_type(NEW.conflict_signatures) = 'array'
    THEN NEW.conflict_signatures ELSE '[]' END) WHERE type = 'text';
END;
--> statement-breakpoint
INSERT OR IGNORE INTO `job_conflict_signatures` (signature, job_id)
SELECT k.value, j.job_id FROM jobs j, json_each(CASE WHEN json_type(j.conflict_signatures) = 'array'
  THEN j.conflict_signatures ELSE '[]' END) k
WHERE j.conflict_signatures IS NOT NULL AND k.type = 'text';
--> statement-breakpoint
-- A judged job holding a signature no receipt or jobs API answer names may own it now: judged
-- again ('upgrade', as `reopenJobs` does). The jobs API lookups say `IS NOT` the receipt's
-- column, as `jobsNaming` does: the partial indexes hold only such rows, and without it each
-- lookup read every job (quadratic in a deployment's jobs).
UPDATE `jobs` SET `previous_verdict` = `verdict`, `rejudge_reason` = 'upgrade',
  `verdict` = 'pending', `next_verify_at` = 0, `verify_attempts` = 0,
  `last_error` = NULL, `lease_owner` = NULL, `lease_until` = NULL,
  `updated_at` = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
WHERE `verdict` IN ('verified', 'partially_verified', 'discrepancy', 'dropped', 'unverifiable')
  AND `job_id` IN (
    SELECT k.job_id FROM job_conflict_signatures k
    WHERE NOT EXISTS (SELECT 1 FROM jobs n WHERE n.escrow_tx = k.signature)
      AND NOT EXISTS (SELECT 1 FROM jobs n WHERE n.settlement_tx = k.signature)
      AND NOT EXISTS (SELECT 1 FROM jobs n WHERE n.api_escrow_tx = k.signature
        AND n.api_escrow_tx IS NOT n.escrow_tx)
      AND NOT EXISTS (SELECT 1 FROM jobs n WHERE n.api_settlement_tx = k.signature
        AND n.api_settlement_tx IS NOT n.settlement_tx));
