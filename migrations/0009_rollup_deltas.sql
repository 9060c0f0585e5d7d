-- Rollup deltas (issue 17): the rollup triggers cost receipt and verdict writes ~42%, mostly
-- one upsert per grain (seven) per written job. The triggers on `jobs` now append one narrow
-- row per write (two when a job moves to another group) to `job_rollup_deltas`, in the same
-- transaction; the writers sum the pending rows into every grain at the end of each batch, and
-- the last trigger does so whenever 1024 rows are pending, whatever path wrote them. Reports add
-- the rows still pending, so rollups plus deltas equal the jobs at every commit. Trigger text:
-- rollupTriggersSql() in src/db/rollups.ts (a test checks they are equal).
DROP TRIGGER IF EXISTS `jobs_rollup_insert`;
--> statement-breakpoint
DROP TRIGGER IF EXISTS `jobs_rollup_update`;
--> statement-breakpoint
DROP TRIGGER IF EXISTS `jobs_rollup_delete`;
--> statement-breakpoint
CREATE TABLE `job_rollup_deltas` (
	`created_at` integer NOT NULL,
	`model` text NOT NULL,
	`worker` text NOT NULL,
	`key_fingerprint` text NOT NULL,
	`jobs_verified` integer NOT NULL,
	`jobs_partially_verified` integer NOT NULL,
	`jobs_open` integer NOT NULL,
	`jobs_discrepancy` integer NOT NULL,
	`jobs_dropped` integer NOT NULL,
	`jobs_unverifiable` integer NOT NULL,
	`charged_units` integer NOT NULL,
	`escrowed_units` integer NOT NULL,
	`worker_paid_units` integer NOT NULL,
	`treasury_paid_units` integer NOT NULL,
	`refunded_units` integer NOT NULL,
	`fees_lamports` integer NOT NULL,
	`verified_escrowed_units` integer NOT NULL,
	`disputed_escrowed_units` integer NOT NULL,
	`verified_charged_units` integer NOT NULL,
	`disputed_charged_units` integer NOT NULL,
	`verified_worker_paid_units` integer NOT NULL,
	`disputed_worker_paid_units` integer NOT NULL,
	`verified_treasury_paid_units` integer NOT NULL,
	`disputed_treasury_paid_units` integer NOT NULL,
	`verified_refunded_units` integer NOT NULL,
	`disputed_refunded_units` integer NOT NULL
);
--> statement-breakpoint
CREATE TRIGGER `jobs_rollup_insert` AFTER INSERT ON `jobs` BEGIN
  INSERT INTO job_rollup_deltas (created_at, model, worker, key_fingerprint,
    jobs_verified, jobs_partially_verified, jobs_open, jobs_discrepancy, jobs_dropped, jobs_unverifiable, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports, verified_escrowed_units, disputed_escrowed_units, verified_charged_units, disputed_charged_units, verified_worker_paid_units, disputed_worker_paid_units, verified_treasury_paid_units, disputed_treasury_paid_units, verified_refunded_units, disputed_refunded_units)
  VALUES (new.created_at, coalesce(new.model, x''), coalesce(new.worker, x''), coalesce(new.key_fingerprint, x''),
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
END;
--> statement-breakpoint
CREATE TRIGGER `jobs_rollup_update` AFTER UPDATE OF verdict, created_at, model, worker, key_fingerprint, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports ON `jobs`
  WHEN (new.created_at / 3600000 IS NOT old.created_at / 3600000
    OR new.model IS NOT old.model OR new.worker IS NOT old.worker
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
    CASE WHEN s.add_new THEN coalesce(new.worker, x'') ELSE coalesce(old.worker, x'') END,
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
    OR new.model IS NOT old.model OR new.worker IS NOT old.worker
    OR new.key_fingerprint IS NOT old.key_fingerprint) AS sub_old
    UNION ALL SELECT 0, 1 WHERE (new.created_at / 3600000 IS NOT old.created_at / 3600000
    OR new.model IS NOT old.model OR new.worker IS NOT old.worker
    OR new.key_fingerprint IS NOT old.key_fingerprint)) AS s;
END;
--> statement-breakpoint
CREATE TRIGGER `jobs_rollup_delete` AFTER DELETE ON `jobs` BEGIN
  INSERT INTO job_rollup_deltas (created_at, model, worker, key_fingerprint,
    jobs_verified, jobs_partially_verified, jobs_open, jobs_discrepancy, jobs_dropped, jobs_unverifiable, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports, verified_escrowed_units, disputed_escrowed_units, verified_charged_units, disputed_charged_units, verified_worker_paid_units, disputed_worker_paid_units, verified_treasury_paid_units, disputed_treasury_paid_units, verified_refunded_units, disputed_refunded_units)
  VALUES (old.created_at, coalesce(old.model, x''), coalesce(old.worker, x''), coalesce(old.key_fingerprint, x''),
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
END;
--> statement-breakpoint
CREATE TRIGGER `jobs_rollup_fold` AFTER INSERT ON `job_rollup_deltas`
  WHEN new.rowid >= 1024
BEGIN
  INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint,
    jobs_verified, jobs_partially_verified, jobs_open, jobs_discrepancy, jobs_dropped, jobs_unverifiable, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports, verified_escrowed_units, disputed_escrowed_units, verified_charged_units, disputed_charged_units, verified_worker_paid_units, disputed_worker_paid_units, verified_treasury_paid_units, disputed_treasury_paid_units, verified_refunded_units, disputed_refunded_units)
  SELECT g.grain, h.hour * 3600000 / CASE WHEN g.grain >= 4 THEN 3600000 ELSE 86400000 END,
    CASE WHEN g.grain IN (0, 1, 4) THEN h.model ELSE x'' END,
    CASE WHEN g.grain IN (0, 2, 5) THEN h.worker ELSE x'' END,
    CASE WHEN g.grain IN (0, 3, 6) THEN h.key_fingerprint ELSE x'' END,
    sum(h.jobs_verified), sum(h.jobs_partially_verified), sum(h.jobs_open), sum(h.jobs_discrepancy), sum(h.jobs_dropped), sum(h.jobs_unverifiable), sum(h.charged_units), sum(h.escrowed_units), sum(h.worker_paid_units), sum(h.treasury_paid_units), sum(h.refunded_units), sum(h.fees_lamports), sum(h.verified_escrowed_units), sum(h.disputed_escrowed_units), sum(h.verified_charged_units), sum(h.disputed_charged_units), sum(h.verified_worker_paid_units), sum(h.disputed_worker_paid_units), sum(h.verified_treasury_paid_units), sum(h.disputed_treasury_paid_units), sum(h.verified_refunded_units), sum(h.disputed_refunded_units)
  FROM (SELECT created_at / 3600000 AS hour, model, worker, key_fingerprint,
      sum(jobs_verified) AS jobs_verified, sum(jobs_partially_verified) AS jobs_partially_verified, sum(jobs_open) AS jobs_open, sum(jobs_discrepancy) AS jobs_discrepancy, sum(jobs_dropped) AS jobs_dropped, sum(jobs_unverifiable) AS jobs_unverifiable, sum(charged_units) AS charged_units, sum(escrowed_units) AS escrowed_units, sum(worker_paid_units) AS worker_paid_units, sum(treasury_paid_units) AS treasury_paid_units, sum(refunded_units) AS refunded_units, sum(fees_lamports) AS fees_lamports, sum(verified_escrowed_units) AS verified_escrowed_units, sum(disputed_escrowed_units) AS disputed_escrowed_units, sum(verified_charged_units) AS verified_charged_units, sum(disputed_charged_units) AS disputed_charged_units, sum(verified_worker_paid_units) AS verified_worker_paid_units, sum(disputed_worker_paid_units) AS disputed_worker_paid_units, sum(verified_treasury_paid_units) AS verified_treasury_paid_units, sum(disputed_treasury_paid_units) AS disputed_treasury_paid_units, sum(verified_refunded_units) AS verified_refunded_units, sum(disputed_refunded_units) AS disputed_refunded_units
    FROM job_rollup_deltas GROUP BY 1, 2, 3, 4) AS h CROSS JOIN (SELECT 0 AS grain UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6) AS g
  WHERE true
  GROUP BY 1, 2, 3, 4, 5
  ON CONFLICT (grain, day, model, worker, key_fingerprint) DO UPDATE SET
    jobs_verified = jobs_verified + excluded.jobs_verified,
    jobs_partially_verified = jobs_partially_verified + excluded.jobs_partially_verified,
    jobs_open = jobs_open + excluded.jobs_open,
    jobs_discrepancy = jobs_discrepancy + excluded.jobs_discrepancy,
    jobs_dropped = jobs_dropped + excluded.jobs_dropped,
    jobs_unverifiable = jobs_unverifiable + excluded.jobs_unverifiable,
    charged_units = charged_units + excluded.charged_units,
    escrowed_units = escrowed_units + excluded.escrowed_units,
    worker_paid_units = worker_paid_units + excluded.worker_paid_units,
    treasury_paid_units = treasury_paid_units + excluded.treasury_paid_units,
    refunded_units = refunded_units + excluded.refunded_units,
    fees_lamports = fees_lamports + excluded.fees_lamports,
    verified_escrowed_units = verified_escrowed_units + excluded.verified_escrowed_units,
    disputed_escrowed_units = disputed_escrowed_units + excluded.disputed_escrowed_units,
    verified_charged_units = verified_charged_units + excluded.verified_charged_units,
    disputed_charged_units = disputed_charged_units + excluded.disputed_charged_units,
    verified_worker_paid_units = verified_worker_paid_units + excluded.verified_worker_paid_units,
    disputed_worker_paid_units = disputed_worker_paid_units + excluded.disputed_worker_paid_units,
    verified_treasury_paid_units = verified_treasury_paid_units + excluded.verified_treasury_paid_units,
    disputed_treasury_paid_units = disputed_treasury_paid_units + excluded.disputed_treasury_paid_units,
    verified_refunded_units = verified_refunded_units + excluded.verified_refunded_units,
    disputed_refunded_units = disputed_refunded_units + excluded.disputed_refunded_units;
  DELETE FROM job_rollup_deltas;
END;
