DROP INDEX "jobs_worker_created";--> statement-breakpoint
CREATE INDEX "jobs_worker_created" ON "jobs" USING btree (coalesce(worker, api_worker),"created_at");--> statement-breakpoint
-- The triggers key a job by the worker reports put it under: the receipt's, else the one
-- the jobs API names (reportWorkerSql() in src/db/rollups.ts; test/pg-schema.test.ts compares
-- the text), and the rows grouped by worker are summed again from the jobs under it.
DROP TRIGGER IF EXISTS "jobs_rollup_insert" ON "jobs";--> statement-breakpoint
DROP TRIGGER IF EXISTS "jobs_rollup_update" ON "jobs";--> statement-breakpoint
DROP TRIGGER IF EXISTS "jobs_rollup_delete" ON "jobs";--> statement-breakpoint
DROP FUNCTION IF EXISTS "jobs_rollup"();--> statement-breakpoint
CREATE OR REPLACE FUNCTION "jobs_rollup_insert"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_rollups AS r (grain, day, model, worker, key_fingerprint,
    jobs_verified, jobs_partially_verified, jobs_open, jobs_discrepancy, jobs_dropped, jobs_unverifiable, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports, verified_escrowed_units, disputed_escrowed_units, verified_charged_units, disputed_charged_units, verified_worker_paid_units, disputed_worker_paid_units, verified_treasury_paid_units, disputed_treasury_paid_units, verified_refunded_units, disputed_refunded_units)
  SELECT g.grain,
    c.created_at / CASE WHEN g.grain >= 4 THEN 3600000 ELSE 86400000 END,
    CASE WHEN g.grain IN (0, 1, 4) THEN c.model END,
    CASE WHEN g.grain IN (0, 2, 5) THEN c.worker END,
    CASE WHEN g.grain IN (0, 3, 6) THEN c.key_fingerprint END,
    sum(c.sign * (c.verdict = 'verified')::int),
    sum(c.sign * (c.verdict = 'partially_verified')::int),
    sum(c.sign * (c.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement'))::int),
    sum(c.sign * (c.verdict = 'discrepancy')::int),
    sum(c.sign * (c.verdict = 'dropped')::int),
    sum(c.sign * (c.verdict = 'unverifiable')::int),
    sum(c.sign * coalesce(c.charged_units, 0)),
    sum(c.sign * coalesce(c.escrowed_units, 0)),
    sum(c.sign * coalesce(c.worker_paid_units, 0)),
    sum(c.sign * coalesce(c.treasury_paid_units, 0)),
    sum(c.sign * coalesce(c.refunded_units, 0)),
    sum(c.sign * coalesce(c.fees_lamports, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.escrowed_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.escrowed_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.charged_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.charged_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.worker_paid_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.worker_paid_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.treasury_paid_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.treasury_paid_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.refunded_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.refunded_units END, 0))
  FROM (SELECT 1, created_at, model, coalesce(worker, api_worker), key_fingerprint, verdict, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports FROM new_jobs) AS c (sign, created_at, model, worker, key_fingerprint, verdict, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports)
  CROSS JOIN (VALUES (0), (1), (2), (3), (4), (5), (6)) AS g (grain)
  GROUP BY 1, 2, 3, 4, 5
  HAVING sum(c.sign * (c.verdict = 'verified')::int) <> 0
    OR sum(c.sign * (c.verdict = 'partially_verified')::int) <> 0
    OR sum(c.sign * (c.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement'))::int) <> 0
    OR sum(c.sign * (c.verdict = 'discrepancy')::int) <> 0
    OR sum(c.sign * (c.verdict = 'dropped')::int) <> 0
    OR sum(c.sign * (c.verdict = 'unverifiable')::int) <> 0
    OR sum(c.sign * coalesce(c.charged_units, 0)) <> 0
    OR sum(c.sign * coalesce(c.escrowed_units, 0)) <> 0
    OR sum(c.sign * coalesce(c.worker_paid_units, 0)) <> 0
    OR sum(c.sign * coalesce(c.treasury_paid_units, 0)) <> 0
    OR sum(c.sign * coalesce(c.refunded_units, 0)) <> 0
    OR sum(c.sign * coalesce(c.fees_lamports, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.escrowed_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.escrowed_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.charged_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.charged_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.worker_paid_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.worker_paid_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.treasury_paid_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.treasury_paid_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.refunded_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.refunded_units END, 0)) <> 0
  ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (grain, day, model, worker, key_fingerprint) DO UPDATE SET
    jobs_verified = r.jobs_verified + EXCLUDED.jobs_verified,
    jobs_partially_verified = r.jobs_partially_verified + EXCLUDED.jobs_partially_verified,
    jobs_open = r.jobs_open + EXCLUDED.jobs_open,
    jobs_discrepancy = r.jobs_discrepancy + EXCLUDED.jobs_discrepancy,
    jobs_dropped = r.jobs_dropped + EXCLUDED.jobs_dropped,
    jobs_unverifiable = r.jobs_unverifiable + EXCLUDED.jobs_unverifiable,
    charged_units = r.charged_units + EXCLUDED.charged_units,
    escrowed_units = r.escrowed_units + EXCLUDED.escrowed_units,
    worker_paid_units = r.worker_paid_units + EXCLUDED.worker_paid_units,
    treasury_paid_units = r.treasury_paid_units + EXCLUDED.treasury_paid_units,
    refunded_units = r.refunded_units + EXCLUDED.refunded_units,
    fees_lamports = r.fees_lamports + EXCLUDED.fees_lamports,
    verified_escrowed_units = r.verified_escrowed_units + EXCLUDED.verified_escrowed_units,
    disputed_escrowed_units = r.disputed_escrowed_units + EXCLUDED.disputed_escrowed_units,
    verified_charged_units = r.verified_charged_units + EXCLUDED.verified_charged_units,
    disputed_charged_units = r.disputed_charged_units + EXCLUDED.disputed_charged_units,
    verified_worker_paid_units = r.verified_worker_paid_units + EXCLUDED.verified_worker_paid_units,
    disputed_worker_paid_units = r.disputed_worker_paid_units + EXCLUDED.disputed_worker_paid_units,
    verified_treasury_paid_units = r.verified_treasury_paid_units + EXCLUDED.verified_treasury_paid_units,
    disputed_treasury_paid_units = r.disputed_treasury_paid_units + EXCLUDED.disputed_treasury_paid_units,
    verified_refunded_units = r.verified_refunded_units + EXCLUDED.verified_refunded_units,
    disputed_refunded_units = r.disputed_refunded_units + EXCLUDED.disputed_refunded_units;
  RETURN NULL;
END;
$$;--> statement-breakpoint
CREATE TRIGGER "jobs_rollup_insert" AFTER INSERT ON "jobs"
  REFERENCING NEW TABLE AS new_jobs
  FOR EACH STATEMENT EXECUTE FUNCTION "jobs_rollup_insert"();--> statement-breakpoint
CREATE OR REPLACE FUNCTION "jobs_rollup_update"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_rollups AS r (grain, day, model, worker, key_fingerprint,
    jobs_verified, jobs_partially_verified, jobs_open, jobs_discrepancy, jobs_dropped, jobs_unverifiable, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports, verified_escrowed_units, disputed_escrowed_units, verified_charged_units, disputed_charged_units, verified_worker_paid_units, disputed_worker_paid_units, verified_treasury_paid_units, disputed_treasury_paid_units, verified_refunded_units, disputed_refunded_units)
  SELECT g.grain,
    c.created_at / CASE WHEN g.grain >= 4 THEN 3600000 ELSE 86400000 END,
    CASE WHEN g.grain IN (0, 1, 4) THEN c.model END,
    CASE WHEN g.grain IN (0, 2, 5) THEN c.worker END,
    CASE WHEN g.grain IN (0, 3, 6) THEN c.key_fingerprint END,
    sum(c.sign * (c.verdict = 'verified')::int),
    sum(c.sign * (c.verdict = 'partially_verified')::int),
    sum(c.sign * (c.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement'))::int),
    sum(c.sign * (c.verdict = 'discrepancy')::int),
    sum(c.sign * (c.verdict = 'dropped')::int),
    sum(c.sign * (c.verdict = 'unverifiable')::int),
    sum(c.sign * coalesce(c.charged_units, 0)),
    sum(c.sign * coalesce(c.escrowed_units, 0)),
    sum(c.sign * coalesce(c.worker_paid_units, 0)),
    sum(c.sign * coalesce(c.treasury_paid_units, 0)),
    sum(c.sign * coalesce(c.refunded_units, 0)),
    sum(c.sign * coalesce(c.fees_lamports, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.escrowed_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.escrowed_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.charged_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.charged_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.worker_paid_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.worker_paid_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.treasury_paid_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.treasury_paid_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.refunded_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.refunded_units END, 0))
  FROM old_jobs AS o FULL JOIN new_jobs AS n ON n.job_id = o.job_id
  CROSS JOIN LATERAL (VALUES
    (o.job_id, -1, o.created_at, o.model, coalesce(o.worker, o.api_worker), o.key_fingerprint, o.verdict, o.charged_units, o.escrowed_units, o.worker_paid_units, o.treasury_paid_units, o.refunded_units, o.fees_lamports),
    (n.job_id, 1, n.created_at, n.model, coalesce(n.worker, n.api_worker), n.key_fingerprint, n.verdict, n.charged_units, n.escrowed_units, n.worker_paid_units, n.treasury_paid_units, n.refunded_units, n.fees_lamports)
  ) AS c (job_id, sign, created_at, model, worker, key_fingerprint, verdict, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports)
  CROSS JOIN (VALUES (0), (1), (2), (3), (4), (5), (6)) AS g (grain)
  WHERE c.job_id IS NOT NULL
    AND (o.job_id IS NULL OR n.job_id IS NULL
    OR o.created_at / 3600000 IS DISTINCT FROM n.created_at / 3600000
    OR o.model IS DISTINCT FROM n.model
    OR o.key_fingerprint IS DISTINCT FROM n.key_fingerprint
    OR coalesce(o.worker, o.api_worker) IS DISTINCT FROM coalesce(n.worker, n.api_worker)
    OR CASE WHEN o.verdict = 'verified' THEN 0 WHEN o.verdict = 'partially_verified' THEN 1 WHEN o.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement') THEN 2 WHEN o.verdict = 'discrepancy' THEN 3 WHEN o.verdict = 'dropped' THEN 4 WHEN o.verdict = 'unverifiable' THEN 5 END IS DISTINCT FROM CASE WHEN n.verdict = 'verified' THEN 0 WHEN n.verdict = 'partially_verified' THEN 1 WHEN n.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement') THEN 2 WHEN n.verdict = 'discrepancy' THEN 3 WHEN n.verdict = 'dropped' THEN 4 WHEN n.verdict = 'unverifiable' THEN 5 END
    OR coalesce(o.charged_units, 0) IS DISTINCT FROM coalesce(n.charged_units, 0)
    OR coalesce(o.escrowed_units, 0) IS DISTINCT FROM coalesce(n.escrowed_units, 0)
    OR coalesce(o.worker_paid_units, 0) IS DISTINCT FROM coalesce(n.worker_paid_units, 0)
    OR coalesce(o.treasury_paid_units, 0) IS DISTINCT FROM coalesce(n.treasury_paid_units, 0)
    OR coalesce(o.refunded_units, 0) IS DISTINCT FROM coalesce(n.refunded_units, 0)
    OR coalesce(o.fees_lamports, 0) IS DISTINCT FROM coalesce(n.fees_lamports, 0))
  GROUP BY 1, 2, 3, 4, 5
  HAVING sum(c.sign * (c.verdict = 'verified')::int) <> 0
    OR sum(c.sign * (c.verdict = 'partially_verified')::int) <> 0
    OR sum(c.sign * (c.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement'))::int) <> 0
    OR sum(c.sign * (c.verdict = 'discrepancy')::int) <> 0
    OR sum(c.sign * (c.verdict = 'dropped')::int) <> 0
    OR sum(c.sign * (c.verdict = 'unverifiable')::int) <> 0
    OR sum(c.sign * coalesce(c.charged_units, 0)) <> 0
    OR sum(c.sign * coalesce(c.escrowed_units, 0)) <> 0
    OR sum(c.sign * coalesce(c.worker_paid_units, 0)) <> 0
    OR sum(c.sign * coalesce(c.treasury_paid_units, 0)) <> 0
    OR sum(c.sign * coalesce(c.refunded_units, 0)) <> 0
    OR sum(c.sign * coalesce(c.fees_lamports, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.escrowed_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.escrowed_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.charged_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.charged_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.worker_paid_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.worker_paid_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.treasury_paid_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.treasury_paid_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.refunded_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.refunded_units END, 0)) <> 0
  ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (grain, day, model, worker, key_fingerprint) DO UPDATE SET
    jobs_verified = r.jobs_verified + EXCLUDED.jobs_verified,
    jobs_partially_verified = r.jobs_partially_verified + EXCLUDED.jobs_partially_verified,
    jobs_open = r.jobs_open + EXCLUDED.jobs_open,
    jobs_discrepancy = r.jobs_discrepancy + EXCLUDED.jobs_discrepancy,
    jobs_dropped = r.jobs_dropped + EXCLUDED.jobs_dropped,
    jobs_unverifiable = r.jobs_unverifiable + EXCLUDED.jobs_unverifiable,
    charged_units = r.charged_units + EXCLUDED.charged_units,
    escrowed_units = r.escrowed_units + EXCLUDED.escrowed_units,
    worker_paid_units = r.worker_paid_units + EXCLUDED.worker_paid_units,
    treasury_paid_units = r.treasury_paid_units + EXCLUDED.treasury_paid_units,
    refunded_units = r.refunded_units + EXCLUDED.refunded_units,
    fees_lamports = r.fees_lamports + EXCLUDED.fees_lamports,
    verified_escrowed_units = r.verified_escrowed_units + EXCLUDED.verified_escrowed_units,
    disputed_escrowed_units = r.disputed_escrowed_units + EXCLUDED.disputed_escrowed_units,
    verified_charged_units = r.verified_charged_units + EXCLUDED.verified_charged_units,
    disputed_charged_units = r.disputed_charged_units + EXCLUDED.disputed_charged_units,
    verified_worker_paid_units = r.verified_worker_paid_units + EXCLUDED.verified_worker_paid_units,
    disputed_worker_paid_units = r.disputed_worker_paid_units + EXCLUDED.disputed_worker_paid_units,
    verified_treasury_paid_units = r.verified_treasury_paid_units + EXCLUDED.verified_treasury_paid_units,
    disputed_treasury_paid_units = r.disputed_treasury_paid_units + EXCLUDED.disputed_treasury_paid_units,
    verified_refunded_units = r.verified_refunded_units + EXCLUDED.verified_refunded_units,
    disputed_refunded_units = r.disputed_refunded_units + EXCLUDED.disputed_refunded_units;
  RETURN NULL;
END;
$$;--> statement-breakpoint
CREATE TRIGGER "jobs_rollup_update" AFTER UPDATE ON "jobs"
  REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
  FOR EACH STATEMENT EXECUTE FUNCTION "jobs_rollup_update"();--> statement-breakpoint
CREATE OR REPLACE FUNCTION "jobs_rollup_delete"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_rollups AS r (grain, day, model, worker, key_fingerprint,
    jobs_verified, jobs_partially_verified, jobs_open, jobs_discrepancy, jobs_dropped, jobs_unverifiable, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports, verified_escrowed_units, disputed_escrowed_units, verified_charged_units, disputed_charged_units, verified_worker_paid_units, disputed_worker_paid_units, verified_treasury_paid_units, disputed_treasury_paid_units, verified_refunded_units, disputed_refunded_units)
  SELECT g.grain,
    c.created_at / CASE WHEN g.grain >= 4 THEN 3600000 ELSE 86400000 END,
    CASE WHEN g.grain IN (0, 1, 4) THEN c.model END,
    CASE WHEN g.grain IN (0, 2, 5) THEN c.worker END,
    CASE WHEN g.grain IN (0, 3, 6) THEN c.key_fingerprint END,
    sum(c.sign * (c.verdict = 'verified')::int),
    sum(c.sign * (c.verdict = 'partially_verified')::int),
    sum(c.sign * (c.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement'))::int),
    sum(c.sign * (c.verdict = 'discrepancy')::int),
    sum(c.sign * (c.verdict = 'dropped')::int),
    sum(c.sign * (c.verdict = 'unverifiable')::int),
    sum(c.sign * coalesce(c.charged_units, 0)),
    sum(c.sign * coalesce(c.escrowed_units, 0)),
    sum(c.sign * coalesce(c.worker_paid_units, 0)),
    sum(c.sign * coalesce(c.treasury_paid_units, 0)),
    sum(c.sign * coalesce(c.refunded_units, 0)),
    sum(c.sign * coalesce(c.fees_lamports, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.escrowed_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.escrowed_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.charged_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.charged_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.worker_paid_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.worker_paid_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.treasury_paid_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.treasury_paid_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.refunded_units END, 0)),
    sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.refunded_units END, 0))
  FROM (SELECT -1, created_at, model, coalesce(worker, api_worker), key_fingerprint, verdict, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports FROM old_jobs) AS c (sign, created_at, model, worker, key_fingerprint, verdict, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports)
  CROSS JOIN (VALUES (0), (1), (2), (3), (4), (5), (6)) AS g (grain)
  GROUP BY 1, 2, 3, 4, 5
  HAVING sum(c.sign * (c.verdict = 'verified')::int) <> 0
    OR sum(c.sign * (c.verdict = 'partially_verified')::int) <> 0
    OR sum(c.sign * (c.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement'))::int) <> 0
    OR sum(c.sign * (c.verdict = 'discrepancy')::int) <> 0
    OR sum(c.sign * (c.verdict = 'dropped')::int) <> 0
    OR sum(c.sign * (c.verdict = 'unverifiable')::int) <> 0
    OR sum(c.sign * coalesce(c.charged_units, 0)) <> 0
    OR sum(c.sign * coalesce(c.escrowed_units, 0)) <> 0
    OR sum(c.sign * coalesce(c.worker_paid_units, 0)) <> 0
    OR sum(c.sign * coalesce(c.treasury_paid_units, 0)) <> 0
    OR sum(c.sign * coalesce(c.refunded_units, 0)) <> 0
    OR sum(c.sign * coalesce(c.fees_lamports, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.escrowed_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.escrowed_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.charged_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.charged_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.worker_paid_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.worker_paid_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.treasury_paid_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.treasury_paid_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict = 'verified' THEN c.refunded_units END, 0)) <> 0
    OR sum(c.sign * coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.refunded_units END, 0)) <> 0
  ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (grain, day, model, worker, key_fingerprint) DO UPDATE SET
    jobs_verified = r.jobs_verified + EXCLUDED.jobs_verified,
    jobs_partially_verified = r.jobs_partially_verified + EXCLUDED.jobs_partially_verified,
    jobs_open = r.jobs_open + EXCLUDED.jobs_open,
    jobs_discrepancy = r.jobs_discrepancy + EXCLUDED.jobs_discrepancy,
    jobs_dropped = r.jobs_dropped + EXCLUDED.jobs_dropped,
    jobs_unverifiable = r.jobs_unverifiable + EXCLUDED.jobs_unverifiable,
    charged_units = r.charged_units + EXCLUDED.charged_units,
    escrowed_units = r.escrowed_units + EXCLUDED.escrowed_units,
    worker_paid_units = r.worker_paid_units + EXCLUDED.worker_paid_units,
    treasury_paid_units = r.treasury_paid_units + EXCLUDED.treasury_paid_units,
    refunded_units = r.refunded_units + EXCLUDED.refunded_units,
    fees_lamports = r.fees_lamports + EXCLUDED.fees_lamports,
    verified_escrowed_units = r.verified_escrowed_units + EXCLUDED.verified_escrowed_units,
    disputed_escrowed_units = r.disputed_escrowed_units + EXCLUDED.disputed_escrowed_units,
    verified_charged_units = r.verified_charged_units + EXCLUDED.verified_charged_units,
    disputed_charged_units = r.disputed_charged_units + EXCLUDED.disputed_charged_units,
    verified_worker_paid_units = r.verified_worker_paid_units + EXCLUDED.verified_worker_paid_units,
    disputed_worker_paid_units = r.disputed_worker_paid_units + EXCLUDED.disputed_worker_paid_units,
    verified_treasury_paid_units = r.verified_treasury_paid_units + EXCLUDED.verified_treasury_paid_units,
    disputed_treasury_paid_units = r.disputed_treasury_paid_units + EXCLUDED.disputed_treasury_paid_units,
    verified_refunded_units = r.verified_refunded_units + EXCLUDED.verified_refunded_units,
    disputed_refunded_units = r.disputed_refunded_units + EXCLUDED.disputed_refunded_units;
  RETURN NULL;
END;
$$;--> statement-breakpoint
CREATE TRIGGER "jobs_rollup_delete" AFTER DELETE ON "jobs"
  REFERENCING OLD TABLE AS old_jobs
  FOR EACH STATEMENT EXECUTE FUNCTION "jobs_rollup_delete"();--> statement-breakpoint
DELETE FROM job_rollups WHERE grain IN (0, 2, 5);--> statement-breakpoint
INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint,
    jobs_verified, jobs_partially_verified, jobs_open, jobs_discrepancy, jobs_dropped, jobs_unverifiable, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports, verified_escrowed_units, disputed_escrowed_units, verified_charged_units, disputed_charged_units, verified_worker_paid_units, disputed_worker_paid_units, verified_treasury_paid_units, disputed_treasury_paid_units, verified_refunded_units, disputed_refunded_units)
  SELECT g.grain,
    c.created_at / CASE WHEN g.grain >= 4 THEN 3600000 ELSE 86400000 END,
    CASE WHEN g.grain IN (0, 1, 4) THEN c.model END,
    CASE WHEN g.grain IN (0, 2, 5) THEN c.worker END,
    CASE WHEN g.grain IN (0, 3, 6) THEN c.key_fingerprint END,
    sum((c.verdict = 'verified')::int),
    sum((c.verdict = 'partially_verified')::int),
    sum((c.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement'))::int),
    sum((c.verdict = 'discrepancy')::int),
    sum((c.verdict = 'dropped')::int),
    sum((c.verdict = 'unverifiable')::int),
    sum(coalesce(c.charged_units, 0)),
    sum(coalesce(c.escrowed_units, 0)),
    sum(coalesce(c.worker_paid_units, 0)),
    sum(coalesce(c.treasury_paid_units, 0)),
    sum(coalesce(c.refunded_units, 0)),
    sum(coalesce(c.fees_lamports, 0)),
    sum(coalesce(CASE WHEN c.verdict = 'verified' THEN c.escrowed_units END, 0)),
    sum(coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.escrowed_units END, 0)),
    sum(coalesce(CASE WHEN c.verdict = 'verified' THEN c.charged_units END, 0)),
    sum(coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.charged_units END, 0)),
    sum(coalesce(CASE WHEN c.verdict = 'verified' THEN c.worker_paid_units END, 0)),
    sum(coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.worker_paid_units END, 0)),
    sum(coalesce(CASE WHEN c.verdict = 'verified' THEN c.treasury_paid_units END, 0)),
    sum(coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.treasury_paid_units END, 0)),
    sum(coalesce(CASE WHEN c.verdict = 'verified' THEN c.refunded_units END, 0)),
    sum(coalesce(CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN c.refunded_units END, 0))
  FROM (SELECT created_at, model, coalesce(worker, api_worker), key_fingerprint, verdict, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports FROM jobs) AS c (created_at, model, worker, key_fingerprint, verdict, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports)
  CROSS JOIN (VALUES (0), (2), (5)) AS g (grain)
  GROUP BY 1, 2, 3, 4, 5
  ORDER BY 1, 2, 3, 4, 5;