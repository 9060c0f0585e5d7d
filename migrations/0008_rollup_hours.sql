-- Hourly rollups and cheaper triggers (issue 17). The four covering report indexes on `jobs`
-- go: reports read the rollups, and every verdict write paid for four wide index entries. The
-- rollups gain hour grains (4: hour x model, 5: hour x worker, 6: hour x key; `day` holds the
-- UTC hour number there), so a period that starts or ends inside a day reads the jobs of its
-- partial hours only. The two update triggers become one, which fires only when a reported
-- figure or a group changes. Trigger text: rollupTriggersSql() in src/db/rollups.ts, generated
-- from the table of report figures (a test checks they are equal).
DROP INDEX `jobs_report_day`;--> statement-breakpoint
DROP INDEX `jobs_report_model`;--> statement-breakpoint
DROP INDEX `jobs_report_worker`;--> statement-breakpoint
DROP INDEX `jobs_report_key`;
--> statement-breakpoint
DROP TRIGGER IF EXISTS `jobs_rollup_insert`;
--> statement-breakpoint
DROP TRIGGER IF EXISTS `jobs_rollup_update`;
--> statement-breakpoint
DROP TRIGGER IF EXISTS `jobs_rollup_move`;
--> statement-breakpoint
DROP TRIGGER IF EXISTS `jobs_rollup_delete`;
--> statement-breakpoint
CREATE TRIGGER `jobs_rollup_insert` AFTER INSERT ON `jobs` BEGIN
  INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint,
    jobs_verified, jobs_partially_verified, jobs_open, jobs_discrepancy, jobs_dropped, jobs_unverifiable, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports, verified_escrowed_units, disputed_escrowed_units, verified_charged_units, disputed_charged_units, verified_worker_paid_units, disputed_worker_paid_units, verified_treasury_paid_units, disputed_treasury_paid_units, verified_refunded_units, disputed_refunded_units)
  SELECT g.grain,
    new.created_at / CASE WHEN g.grain >= 4 THEN 3600000 ELSE 86400000 END,
    CASE WHEN g.grain IN (0, 1, 4) THEN coalesce(new.model, x'') ELSE x'' END,
    CASE WHEN g.grain IN (0, 2, 5) THEN coalesce(new.worker, x'') ELSE x'' END,
    CASE WHEN g.grain IN (0, 3, 6) THEN coalesce(new.key_fingerprint, x'') ELSE x'' END,
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
    coalesce(CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN new.refunded_units END, 0)
  FROM (SELECT 0 AS grain UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6) AS g WHERE true
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
  INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint,
    jobs_verified, jobs_partially_verified, jobs_open, jobs_discrepancy, jobs_dropped, jobs_unverifiable, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports, verified_escrowed_units, disputed_escrowed_units, verified_charged_units, disputed_charged_units, verified_worker_paid_units, disputed_worker_paid_units, verified_treasury_paid_units, disputed_treasury_paid_units, verified_refunded_units, disputed_refunded_units)
  SELECT g.grain,
    CASE WHEN s.add_new THEN new.created_at / CASE WHEN g.grain >= 4 THEN 3600000 ELSE 86400000 END ELSE old.created_at / CASE WHEN g.grain >= 4 THEN 3600000 ELSE 86400000 END END,
    CASE WHEN s.add_new THEN CASE WHEN g.grain IN (0, 1, 4) THEN coalesce(new.model, x'') ELSE x'' END ELSE CASE WHEN g.grain IN (0, 1, 4) THEN coalesce(old.model, x'') ELSE x'' END END,
    CASE WHEN s.add_new THEN CASE WHEN g.grain IN (0, 2, 5) THEN coalesce(new.worker, x'') ELSE x'' END ELSE CASE WHEN g.grain IN (0, 2, 5) THEN coalesce(old.worker, x'') ELSE x'' END END,
    CASE WHEN s.add_new THEN CASE WHEN g.grain IN (0, 3, 6) THEN coalesce(new.key_fingerprint, x'') ELSE x'' END ELSE CASE WHEN g.grain IN (0, 3, 6) THEN coalesce(old.key_fingerprint, x'') ELSE x'' END END,
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
  FROM (SELECT 0 AS grain UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6) AS g, (SELECT 1 AS add_new, 1 - (new.created_at / 3600000 IS NOT old.created_at / 3600000
    OR new.model IS NOT old.model OR new.worker IS NOT old.worker
    OR new.key_fingerprint IS NOT old.key_fingerprint) AS sub_old
    UNION ALL SELECT 0, 1 WHERE (new.created_at / 3600000 IS NOT old.created_at / 3600000
    OR new.model IS NOT old.model OR new.worker IS NOT old.worker
    OR new.key_fingerprint IS NOT old.key_fingerprint)) AS s WHERE true
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
END;
--> statement-breakpoint
CREATE TRIGGER `jobs_rollup_delete` AFTER DELETE ON `jobs` BEGIN
  INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint,
    jobs_verified, jobs_partially_verified, jobs_open, jobs_discrepancy, jobs_dropped, jobs_unverifiable, charged_units, escrowed_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports, verified_escrowed_units, disputed_escrowed_units, verified_charged_units, disputed_charged_units, verified_worker_paid_units, disputed_worker_paid_units, verified_treasury_paid_units, disputed_treasury_paid_units, verified_refunded_units, disputed_refunded_units)
  SELECT g.grain,
    old.created_at / CASE WHEN g.grain >= 4 THEN 3600000 ELSE 86400000 END,
    CASE WHEN g.grain IN (0, 1, 4) THEN coalesce(old.model, x'') ELSE x'' END,
    CASE WHEN g.grain IN (0, 2, 5) THEN coalesce(old.worker, x'') ELSE x'' END,
    CASE WHEN g.grain IN (0, 3, 6) THEN coalesce(old.key_fingerprint, x'') ELSE x'' END,
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
    -coalesce(CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN old.refunded_units END, 0)
  FROM (SELECT 0 AS grain UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6) AS g WHERE true
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
END;
--> statement-breakpoint
-- Every recorded day is summed again by the resumable backfill (src/db/rollups.ts), which now
-- also builds its hour rows; reports read the jobs until it is done.
INSERT OR REPLACE INTO `job_rollups_backfill` (`id`, `next_day`, `last_day`)
  SELECT 1, (SELECT min(`created_at`) FROM `jobs`) / 86400000, (SELECT max(`created_at`) FROM `jobs`) / 86400000
  WHERE EXISTS (SELECT 1 FROM `jobs`);
