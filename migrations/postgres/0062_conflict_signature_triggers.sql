-- As SQLite's 0071: `job_conflict_signatures` holds each signature of each job's
-- `conflict_signatures` list, kept by a trigger whichever writer changes the list; a payout
-- named only there had no owner, and a receipt naming it later did not send its job back.
CREATE OR REPLACE FUNCTION "jobs_conflict_signatures"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    DELETE FROM job_conflict_signatures WHERE job_id = NEW.job_id;
  END IF;
  INSERT INTO job_conflict_signatures (signature, job_id)
  SELECT DISTINCT e.value #>> '{}', NEW.job_id
  FROM json_array_elements(CASE WHEN json_typeof(NEW.conflict_signatures) = 'array'
    THEN NEW.conflict_signatures ELSE '[]'::json END) AS e(value)
  WHERE json_typeof(e.value) = 'string'
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER "jobs_conflict_signatures_insert"
AFTER INSERT ON "jobs" FOR EACH ROW
WHEN (NEW.conflict_signatures IS NOT NULL)
EXECUTE FUNCTION "jobs_conflict_signatures"();
--> statement-breakpoint
CREATE TRIGGER "jobs_conflict_signatures_update"
AFTER UPDATE OF "conflict_signatures" ON "jobs" FOR EACH ROW
WHEN (NEW.conflict_signatures::text IS DISTINCT FROM OLD.conflict_signatures::text)
EXECUTE FUNCTION "jobs_conflict_signatures"();
--> statement-breakpoint
INSERT INTO "job_conflict_signatures" (signature, job_id)
SELECT DISTINCT e.value #>> '{}', j.job_id
FROM jobs j, json_array_elements(CASE WHEN json_typeof(j.conflict_signatures) = 'array'
  THEN j.conflict_signatures ELSE '[]'::json END) AS e(value)
WHERE j.conflict_signatures IS NOT NULL AND json_typeof(e.value) = 'string'
ON CONFLICT DO NOTHING;
--> statement-breakpoint
-- A judged job holding a signature no receipt or jobs API answer names may own it now: judged
-- again ('upgrade', as `reopenJobsPg` does). The jobs API lookups match the partial indexes'
-- predicates, as `jobsNaming` does.
UPDATE "jobs" SET "previous_verdict" = "verdict", "rejudge_reason" = 'upgrade',
  "verdict" = 'pending', "next_verify_at" = 0, "verify_attempts" = 0,
  "last_error" = NULL, "lease_owner" = NULL, "lease_until" = NULL,
  "updated_at" = (extract(epoch from clock_timestamp()) * 1000)::bigint
WHERE "verdict" IN ('verified', 'partially_verified', 'discrepancy', 'dropped', 'unverifiable')
  AND "job_id" IN (
    SELECT k.job_id FROM job_conflict_signatures k
    WHERE NOT EXISTS (SELECT 1 FROM jobs n WHERE n.escrow_tx = k.signature)
      AND NOT EXISTS (SELECT 1 FROM jobs n WHERE n.settlement_tx = k.signature)
      AND NOT EXISTS (SELECT 1 FROM jobs n WHERE n.api_escrow_tx = k.signature
        AND n.api_escrow_tx IS DISTINCT FROM n.escrow_tx)
      AND NOT EXISTS (SELECT 1 FROM jobs n WHERE n.api_settlement_tx = k.signature
        AND n.api_settlement_tx IS DISTINCT FROM n.settlement_tx));
