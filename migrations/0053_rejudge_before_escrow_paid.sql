-- A verdict written before escrow_paid_units was kept (0050) holds only charged_units, which the
-- vault statement's release rule reads in its place. Where the two differ (a payout that rode in
-- the job's lock, a settlement paying out more than the lock left in escrow) charged counts money
-- escrow never held as paid out of it: the lock was released, payout and all, and no finding
-- named the money. Such a verdict shows it in its own figures: charged beyond what the worker and
-- the treasury got, or beyond what stayed in escrow after the return; or it is a verdict that is
-- not clean, whose figures say little. Only those are judged again: a clean verdict whose charge
-- is what the payees got of what the lock left in escrow reads the same either way, and is left
-- alone. The jobs are reopened as `reopenJobs` does ('upgrade').
UPDATE `jobs` SET `previous_verdict` = `verdict`, `rejudge_reason` = 'upgrade',
  `verdict` = 'pending', `next_verify_at` = 0, `verify_attempts` = 0,
  `last_error` = NULL, `lease_owner` = NULL, `lease_until` = NULL,
  `updated_at` = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
WHERE `escrow_paid_units` IS NULL AND `charged_units` IS NOT NULL
  AND `verdict` IN ('verified', 'partially_verified', 'discrepancy', 'dropped', 'unverifiable')
  AND (`verdict` NOT IN ('verified', 'partially_verified')
    OR `charged_units` > coalesce(`worker_paid_units`, 0) + coalesce(`treasury_paid_units`, 0)
    OR `charged_units` > coalesce(`escrowed_units`, 0) - coalesce(`refunded_units`, 0));--> statement-breakpoint
-- Their released locks open again (as a configured vault's do, src/store/custody.ts): an open job
-- releases no lock, so no ledger round releases one on charged_units again, and the next one
-- after the new verdict reads escrow_paid_units. Read through the index of jobs being judged
-- again (a job reopened so by an earlier upgrade, still open, has its locks opened too: its
-- verdict to come decides them).
UPDATE `ledger_lines` SET `released` = 0
WHERE `kind` = 'lock' AND `released` = 1
  AND `vault` IN (SELECT `vault` FROM `ledger_cursors`)
  AND `job_id` IN (SELECT `job_id` FROM `jobs`
    WHERE `previous_verdict` IS NOT NULL AND `rejudge_reason` = 'upgrade'
      AND `escrow_paid_units` IS NULL AND `verdict` = 'pending');
