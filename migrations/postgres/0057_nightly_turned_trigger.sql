-- A job judged again from verified (or partially verified) to a verdict
-- that fails a run: one row in `nightly_turned` for the next completed run to name (see the
-- table's comment in src/db/schema.ts). A row trigger whose WHEN lets through only such a turn.
CREATE OR REPLACE FUNCTION "jobs_nightly_turned"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO nightly_turned (job_id, verdict, previous_verdict, turned_at)
  VALUES (NEW.job_id, NEW.verdict, OLD.previous_verdict, coalesce(NEW.verdict_at, NEW.updated_at))
  ON CONFLICT (job_id) DO UPDATE SET verdict = EXCLUDED.verdict,
    previous_verdict = EXCLUDED.previous_verdict, turned_at = EXCLUDED.turned_at;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER "jobs_nightly_turned" AFTER UPDATE OF "verdict" ON "jobs" FOR EACH ROW
WHEN (OLD.previous_verdict IN ('verified', 'partially_verified')
  AND NEW.verdict IN ('discrepancy', 'dropped', 'unverifiable'))
EXECUTE FUNCTION "jobs_nightly_turned"();
