-- A job judged again from verified (or partially verified) to a verdict
-- that fails a run: one row in `nightly_turned` for the next completed run to name (see the
-- table's comment in src/db/schema.ts). A verdict leaving a final one keeps it in
-- `previous_verdict` until the next final verdict is written (src/store/queue-rules.ts).
CREATE TRIGGER `jobs_nightly_turned` AFTER UPDATE OF verdict ON `jobs`
WHEN OLD.previous_verdict IN ('verified', 'partially_verified')
  AND NEW.verdict IN ('discrepancy', 'dropped', 'unverifiable')
BEGIN
  INSERT INTO nightly_turned (job_id, verdict, previous_verdict, turned_at)
  VALUES (NEW.job_id, NEW.verdict, OLD.previous_verdict, coalesce(NEW.verdict_at, NEW.updated_at))
  ON CONFLICT (job_id) DO UPDATE SET verdict = excluded.verdict,
    previous_verdict = excluded.previous_verdict, turned_at = excluded.turned_at;
END;
