-- The checks escrow.single, refund.single and signatures.explained judge what a conflicting
-- receipt or the jobs API names beyond the job's own lock and refund: a job verified before
-- them is looked at again when such a signature exists (reopened as `reopenJobs` does).
UPDATE `jobs` SET `verdict` = 'pending', `next_verify_at` = 0, `verify_attempts` = 0,
  `last_error` = NULL, `lease_owner` = NULL, `lease_until` = NULL
WHERE `verdict` IN ('verified', 'partially_verified')
  AND (`conflict_signatures` IS NOT NULL
    OR (`api_escrow_tx` IS NOT NULL AND `api_escrow_tx` IS NOT `escrow_tx`));
