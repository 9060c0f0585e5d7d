DROP INDEX `jobs_worker_created`;--> statement-breakpoint
CREATE INDEX `jobs_worker_created` ON `jobs` (coalesce(worker, api_worker),`created_at`);--> statement-breakpoint
-- The triggers key a job by the worker reports put it under: the receipt's, else the one
-- the jobs API names (reportWorkerSql() in src/db/rollups.ts; a test compares the text).
DROP TRIGGER IF EXISTS `jobs_rollup_insert`;--> statement-breakpoint
DROP TRIGGER IF EXISTS `jobs_rollup_update`;--> statement-breakpoint
DROP TRIGGER IF EXISTS `jobs_rollup_delete`;--> statement-breakpoint
CREATE TRIGGER `jobs_rollup_insert` AFTER INSERT ON `jobs` BEGIN
  INSERT INTO job_rollup_deltas (created_at, model, worker, key_fingerprint,
    jobs_verified, jobs_partially_verified, jobs_open, jobs_discrepancy, jobs_dropped, jobs_unverifiable, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports, verified_escrowed_units, disputed_escrowed_units, verified_charged_units, disputed_charged_units, verified_worker_paid_units, disputed_worker_paid_units, verified_treasury_paid_units, disputed_treasury_paid_units, verified_refunded_units, disputed_refunded_units)
  VALUES (new.created_at, coalesce(new.model, x''), coalesce(coalesce(new.worker, new.api_worker), x''), coalesce(new.key_fingerprint, x''),
    (new.verdict = 'verified'),
    (new.verdict = 'partially_verified'),
    (new.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement')),
    (new.verdict = 'discrepancy'),
    (new.verdict = 'dropped'),
    (new.verdict = 'unverifiable'),
    coalesce(new.charged_units, 0),
    coalesce(new.escrowed_units, 0),
    coalesce(new.worker_paid_units, 0),
    coalesce(new.treasury_paid_units, 0),
    coalesce(new.refunded_units, 0),
    coalesce(new.fees_lamports, 0),
    coalesce(CASE WHEN new.verdict = 'verified' THEN new.escrowed_units END, 0),
    coalesce(CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN new.escrowed_units END, 0),
    coalesce(CASE WHEN new.verdict = 'verified' THEN new.charged_units END, 0),
    coalesce(CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN new.charged_units END, 0),
    coalesce(CASE WHEN new.verdict = 'verified' THEN new.worker_paid_units END, 0),
    coalesce(CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN new.worker_paid_units END, 0),
    coalesce(CASE WHEN new.verdict = 'verified' THEN new.treasury_paid_units END, 0),
    coalesce(CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN new.treasury_paid_units END, 0),
    coalesce(CASE WHEN new.verdict = 'verified' THEN new.refunded_units END, 0),
    coalesce(CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN new.refunded_units END, 0));
END;--> statement-breakpoint
CREATE TRIGGER `jobs_rollup_update` AFTER UPDATE OF verdict, created_at, model, worker, api_worker, key_fingerprint, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports ON `jobs`
  WHEN (new.created_at / 3600000 IS NOT old.created_at / 3600000
    OR new.model IS NOT old.model OR coalesce(new.worker, new.api_worker) IS NOT coalesce(old.worker, old.api_worker)
    OR new.key_fingerprint IS NOT old.key_fingerprint)
    OR CASE WHEN (new.verdict = 'verified') THEN 0 WHEN (new.verdict = 'partially_verified') THEN 1 WHEN (new.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement')) THEN 2 WHEN (new.verdict = 'discrepancy') THEN 3 WHEN (new.verdict = 'dropped') THEN 4 WHEN (new.verdict = 'unverifiable') THEN 5 END IS NOT CASE WHEN (old.verdict = 'verified') THEN 0 WHEN (old.verdict = 'partially_verified') THEN 1 WHEN (old.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement')) THEN 2 WHEN (old.verdict = 'discrepancy') THEN 3 WHEN (old.verdict = 'dropped') THEN 4 WHEN (old.verdict = 'unverifiable') THEN 5 END
    OR coalesce(new.charged_units, 0) IS NOT coalesce(old.charged_units, 0)
    OR coalesce(new.escrowed_units, 0) IS NOT coalesce(old.escrowed_units, 0)
    OR coalesce(new.worker_paid_units, 0) IS NOT coalesce(old.worker_paid_units, 0)
    OR coalesce(new.treasury_paid_units, 0) IS NOT coalesce(old.treasury_paid_units, 0)
    OR coalesce(new.refunded_units, 0) IS NOT coalesce(old.refunded_units, 0)
    OR coalesce(new.fees_lamports, 0) IS NOT coalesce(old.fees_lamports, 0)
BEGIN
  INSERT INTO job_rollup_deltas (created_at, model, worker, key_fingerprint,
    jobs_verified, jobs_partially_verified, jobs_open, jobs_discrepancy, jobs_dropped, jobs_unverifiable, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports, verified_escrowed_units, disputed_escrowed_units, verified_charged_units, disputed_charged_units, verified_worker_paid_units, disputed_worker_paid_units, verified_treasury_paid_units, disputed_treasury_paid_units, verified_refunded_units, disputed_refunded_units)
  SELECT CASE WHEN s.add_new THEN new.created_at ELSE old.created_at END,
    CASE WHEN s.add_new THEN coalesce(new.model, x'') ELSE coalesce(old.model, x'') END,
    CASE WHEN s.add_new THEN coalesce(coalesce(new.worker, new.api_worker), x'') ELSE coalesce(coalesce(old.worker, old.api_worker), x'') END,
    CASE WHEN s.add_new THEN coalesce(new.key_fingerprint, x'') ELSE coalesce(old.key_fingerprint, x'') END,
    s.add_new * (new.verdict = 'verified') - s.sub_old * (old.verdict = 'verified'),
    s.add_new * (new.verdict = 'partially_verified') - s.sub_old * (old.verdict = 'partially_verified'),
    s.add_new * (new.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement')) - s.sub_old * (old.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement')),
    s.add_new * (new.verdict = 'discrepancy') - s.sub_old * (old.verdict = 'discrepancy'),
    s.add_new * (new.verdict = 'dropped') - s.sub_old * (old.verdict = 'dropped'),
    s.add_new * (new.verdict = 'unverifiable') - s.sub_old * (old.verdict = 'unverifiable'),
    s.add_new * coalesce(new.charged_units, 0) - s.sub_old * coalesce(old.charged_units, 0),
    s.add_new * coalesce(new.escrowed_units, 0) - s.sub_old * coalesce(old.escrowed_units, 0),
    s.add_new * coalesce(new.worker_paid_units, 0) - s.sub_old * coalesce(old.worker_paid_units, 0),
    s.add_new * coalesce(new.treasury_paid_units, 0) - s.sub_old * coalesce(old.treasury_paid_units, 0),
    s.add_new * coalesce(new.refunded_units, 0) - s.sub_old * coalesce(old.refunded_units, 0),
    s.add_new * coalesce(new.fees_lamports, 0) - s.sub_old * coalesce(old.fees_lamports, 0),
    s.add_new * coalesce(CASE WHEN new.verdict = 'verified' THEN new.escrowed_units END, 0) - s.sub_old * coalesce(CASE WHEN old.verdict = 'verified' THEN old.escrowed_units END, 0),
    s.add_new * coalesce(CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN new.escrowed_units END, 0) - s.sub_old * coalesce(CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN old.escrowed_units END, 0),
    s.add_new * coalesce(CASE WHEN new.verdict = 'verified' THEN new.charged_units END, 0) - s.sub_old * coalesce(CASE WHEN old.verdict = 'verified' THEN old.charged_units END, 0),
    s.add_new * coalesce(CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN new.charged_units END, 0) - s.sub_old * coalesce(CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN old.charged_units END, 0),
    s.add_new * coalesce(CASE WHEN new.verdict = 'verified' THEN new.worker_paid_units END, 0) - s.sub_old * coalesce(CASE WHEN old.verdict = 'verified' THEN old.worker_paid_units END, 0),
    s.add_new * coalesce(CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN new.worker_paid_units END, 0) - s.sub_old * coalesce(CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN old.worker_paid_units END, 0),
    s.add_new * coalesce(CASE WHEN new.verdict = 'verified' THEN new.treasury_paid_units END, 0) - s.sub_old * coalesce(CASE WHEN old.verdict = 'verified' THEN old.treasury_paid_units END, 0),
    s.add_new * coalesce(CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN new.treasury_paid_units END, 0) - s.sub_old * coalesce(CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN old.treasury_paid_units END, 0),
    s.add_new * coalesce(CASE WHEN new.verdict = 'verified' THEN new.refunded_units END, 0) - s.sub_old * coalesce(CASE WHEN old.verdict = 'verified' THEN old.refunded_units END, 0),
    s.add_new * coalesce(CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN new.refunded_units END, 0) - s.sub_old * coalesce(CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN old.refunded_units END, 0)
  FROM (SELECT 1 AS add_new, 1 - (new.created_at / 3600000 IS NOT old.created_at / 3600000
    OR new.model IS NOT old.model OR coalesce(new.worker, new.api_worker) IS NOT coalesce(old.worker, old.api_worker)
    OR new.key_fingerprint IS NOT old.key_fingerprint) AS sub_old
    UNION ALL SELECT 0, 1 WHERE (new.created_at / 3600000 IS NOT old.created_at / 3600000
    OR new.model IS NOT old.model OR coalesce(new.worker, new.api_worker) IS NOT coalesce(old.worker, old.api_worker)
    OR new.key_fingerprint IS NOT old.key_fingerprint)) AS s;
END;--> statement-breakpoint
CREATE TRIGGER `jobs_rollup_delete` AFTER DELETE ON `jobs` BEGIN
  INSERT INTO job_rollup_deltas (created_at, model, worker, key_fingerprint,
    jobs_verified, jobs_partially_verified, jobs_open, jobs_discrepancy, jobs_dropped, jobs_unverifiable, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports, verified_escrowed_units, disputed_escrowed_units, verified_charged_units, disputed_charged_units, verified_worker_paid_units, disputed_worker_paid_units, verified_treasury_paid_units, disputed_treasury_paid_units, verified_refunded_units, disputed_refunded_units)
  VALUES (old.created_at, coalesce(old.model, x''), coalesce(coalesce(old.worker, old.api_worker), x''), coalesce(old.key_fingerprint, x''),
    -(old.verdict = 'verified'),
    -(old.verdict = 'partially_verified'),
    -(old.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement')),
    -(old.verdict = 'discrepancy'),
    -(old.verdict = 'dropped'),
    -(old.verdict = 'unverifiable'),
    -coalesce(old.charged_units, 0),
    -coalesce(old.escrowed_units, 0),
    -coalesce(old.worker_paid_units, 0),
    -coalesce(old.treasury_paid_units, 0),
    -coalesce(old.refunded_units, 0),
    -coalesce(old.fees_lamports, 0),
    -coalesce(CASE WHEN old.verdict = 'verified' THEN old.escrowed_units END, 0),
    -coalesce(CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN old.escrowed_units END, 0),
    -coalesce(CASE WHEN old.verdict = 'verified' THEN old.charged_units END, 0),
    -coalesce(CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN old.charged_units END, 0),
    -coalesce(CASE WHEN old.verdict = 'verified' THEN old.worker_paid_units END, 0),
    -coalesce(CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN old.worker_paid_units END, 0),
    -coalesce(CASE WHEN old.verdict = 'verified' THEN old.treasury_paid_units END, 0),
    -coalesce(CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN old.treasury_paid_units END, 0),
    -coalesce(CASE WHEN old.verdict = 'verified' THEN old.refunded_units END, 0),
    -coalesce(CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN old.refunded_units END, 0));
END;--> statement-breakpoint
-- Every recorded day is summed again by the resumable backfill (src/db/rollups.ts), which
-- puts a payout of a receipt without a worker under the worker paid; reports read the jobs
-- until it is done.
INSERT OR REPLACE INTO `job_rollups_backfill` (`id`, `next_day`, `last_day`)
  SELECT 1, (SELECT min(`created_at`) FROM `jobs`) / 86400000, (SELECT max(`created_at`) FROM `jobs`) / 86400000
  WHERE EXISTS (SELECT 1 FROM `jobs`);