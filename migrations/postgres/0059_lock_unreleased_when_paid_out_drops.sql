-- As SQLite's 0068: when a job's paid-out drops (judged again, a payout that covered its lock
-- another job's now), its released locks are reviewed again, so the statement names a lock no
-- payout covers any more.
CREATE OR REPLACE FUNCTION "jobs_locks_unreleased"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE ledger_lines SET released = false
  WHERE vault IN (SELECT vault FROM ledger_cursors) AND job_id = NEW.job_id
    AND kind = 'lock' AND released;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER "jobs_locks_unreleased"
AFTER UPDATE OF "escrow_paid_units", "charged_units" ON "jobs" FOR EACH ROW
WHEN (coalesce(NEW.escrow_paid_units, NEW.charged_units, 0)
  < coalesce(OLD.escrow_paid_units, OLD.charged_units, 0))
EXECUTE FUNCTION "jobs_locks_unreleased"();
