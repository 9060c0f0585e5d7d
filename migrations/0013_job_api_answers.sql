CREATE TABLE `job_api_answers` (
	`job_id` text PRIMARY KEY NOT NULL,
	`response` text NOT NULL,
	FOREIGN KEY (`job_id`) REFERENCES `jobs`(`job_id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
INSERT INTO `job_api_answers` (`job_id`, `response`)
  SELECT `job_id`, `api_response` FROM `jobs`
  WHERE `api_response` IS NOT NULL AND `api_response` <> 'null';--> statement-breakpoint
-- SQLite's DROP COLUMN re-checks every trigger, and fails on the fold trigger's UPDATE ... AS r
-- ... FROM ("no such column: r.jobs_verified"); it is dropped and made again, the same text
-- (rollupTriggersSql() in src/db/rollups.ts).
DROP TRIGGER IF EXISTS `jobs_rollup_fold`;--> statement-breakpoint
ALTER TABLE `jobs` DROP COLUMN `api_response`;--> statement-breakpoint
CREATE TRIGGER `jobs_rollup_fold` AFTER INSERT ON `job_rollup_deltas`
  WHEN new.rowid >= 1024
BEGIN
  INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint)
  SELECT s.grain, s.day, s.model, s.worker, s.key_fingerprint FROM (SELECT g.grain AS grain, h.hour * 3600000 / CASE WHEN g.grain >= 4 THEN 3600000 ELSE 86400000 END AS day,
    CASE WHEN g.grain IN (0, 1, 4) THEN h.model ELSE x'' END AS model,
    CASE WHEN g.grain IN (0, 2, 5) THEN h.worker ELSE x'' END AS worker,
    CASE WHEN g.grain IN (0, 3, 6) THEN h.key_fingerprint ELSE x'' END AS key_fingerprint,
    sum(h.jobs_verified) AS jobs_verified, sum(h.jobs_partially_verified) AS jobs_partially_verified, sum(h.jobs_open) AS jobs_open, sum(h.jobs_discrepancy) AS jobs_discrepancy, sum(h.jobs_dropped) AS jobs_dropped, sum(h.jobs_unverifiable) AS jobs_unverifiable, sum(h.charged_units) AS charged_units, sum(h.escrowed_units) AS escrowed_units, sum(h.worker_paid_units) AS worker_paid_units, sum(h.treasury_paid_units) AS treasury_paid_units, sum(h.refunded_units) AS refunded_units, sum(h.fees_lamports) AS fees_lamports, sum(h.verified_escrowed_units) AS verified_escrowed_units, sum(h.disputed_escrowed_units) AS disputed_escrowed_units, sum(h.verified_charged_units) AS verified_charged_units, sum(h.disputed_charged_units) AS disputed_charged_units, sum(h.verified_worker_paid_units) AS verified_worker_paid_units, sum(h.disputed_worker_paid_units) AS disputed_worker_paid_units, sum(h.verified_treasury_paid_units) AS verified_treasury_paid_units, sum(h.disputed_treasury_paid_units) AS disputed_treasury_paid_units, sum(h.verified_refunded_units) AS verified_refunded_units, sum(h.disputed_refunded_units) AS disputed_refunded_units
  FROM (SELECT created_at / 3600000 AS hour, model, worker, key_fingerprint,
      sum(jobs_verified) AS jobs_verified, sum(jobs_partially_verified) AS jobs_partially_verified, sum(jobs_open) AS jobs_open, sum(jobs_discrepancy) AS jobs_discrepancy, sum(jobs_dropped) AS jobs_dropped, sum(jobs_unverifiable) AS jobs_unverifiable, sum(charged_units) AS charged_units, sum(escrowed_units) AS escrowed_units, sum(worker_paid_units) AS worker_paid_units, sum(treasury_paid_units) AS treasury_paid_units, sum(refunded_units) AS refunded_units, sum(fees_lamports) AS fees_lamports, sum(verified_escrowed_units) AS verified_escrowed_units, sum(disputed_escrowed_units) AS disputed_escrowed_units, sum(verified_charged_units) AS verified_charged_units, sum(disputed_charged_units) AS disputed_charged_units, sum(verified_worker_paid_units) AS verified_worker_paid_units, sum(disputed_worker_paid_units) AS disputed_worker_paid_units, sum(verified_treasury_paid_units) AS verified_treasury_paid_units, sum(disputed_treasury_paid_units) AS disputed_treasury_paid_units, sum(verified_refunded_units) AS verified_refunded_units, sum(disputed_refunded_units) AS disputed_refunded_units
    FROM job_rollup_deltas GROUP BY 1, 2, 3, 4) AS h CROSS JOIN (SELECT 0 AS grain UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6) AS g
  WHERE true
  GROUP BY 1, 2, 3, 4, 5) AS s
  WHERE NOT EXISTS (SELECT 1 FROM job_rollups AS r WHERE r.grain = s.grain AND r.day = s.day AND r.model = s.model AND r.worker = s.worker AND r.key_fingerprint = s.key_fingerprint);
  UPDATE job_rollups AS r SET
    jobs_verified = r.jobs_verified + s.jobs_verified,
    jobs_partially_verified = r.jobs_partially_verified + s.jobs_partially_verified,
    jobs_open = r.jobs_open + s.jobs_open,
    jobs_discrepancy = r.jobs_discrepancy + s.jobs_discrepancy,
    jobs_dropped = r.jobs_dropped + s.jobs_dropped,
    jobs_unverifiable = r.jobs_unverifiable + s.jobs_unverifiable,
    charged_units = r.charged_units + s.charged_units,
    escrowed_units = r.escrowed_units + s.escrowed_units,
    worker_paid_units = r.worker_paid_units + s.worker_paid_units,
    treasury_paid_units = r.treasury_paid_units + s.treasury_paid_units,
    refunded_units = r.refunded_units + s.refunded_units,
    fees_lamports = r.fees_lamports + s.fees_lamports,
    verified_escrowed_units = r.verified_escrowed_units + s.verified_escrowed_units,
    disputed_escrowed_units = r.disputed_escrowed_units + s.disputed_escrowed_units,
    verified_charged_units = r.verified_charged_units + s.verified_charged_units,
    disputed_charged_units = r.disputed_charged_units + s.disputed_charged_units,
    verified_worker_paid_units = r.verified_worker_paid_units + s.verified_worker_paid_units,
    disputed_worker_paid_units = r.disputed_worker_paid_units + s.disputed_worker_paid_units,
    verified_treasury_paid_units = r.verified_treasury_paid_units + s.verified_treasury_paid_units,
    disputed_treasury_paid_units = r.disputed_treasury_paid_units + s.disputed_treasury_paid_units,
    verified_refunded_units = r.verified_refunded_units + s.verified_refunded_units,
    disputed_refunded_units = r.disputed_refunded_units + s.disputed_refunded_units
  FROM (SELECT g.grain AS grain, h.hour * 3600000 / CASE WHEN g.grain >= 4 THEN 3600000 ELSE 86400000 END AS day,
    CASE WHEN g.grain IN (0, 1, 4) THEN h.model ELSE x'' END AS model,
    CASE WHEN g.grain IN (0, 2, 5) THEN h.worker ELSE x'' END AS worker,
    CASE WHEN g.grain IN (0, 3, 6) THEN h.key_fingerprint ELSE x'' END AS key_fingerprint,
    sum(h.jobs_verified) AS jobs_verified, sum(h.jobs_partially_verified) AS jobs_partially_verified, sum(h.jobs_open) AS jobs_open, sum(h.jobs_discrepancy) AS jobs_discrepancy, sum(h.jobs_dropped) AS jobs_dropped, sum(h.jobs_unverifiable) AS jobs_unverifiable, sum(h.charged_units) AS charged_units, sum(h.escrowed_units) AS escrowed_units, sum(h.worker_paid_units) AS worker_paid_units, sum(h.treasury_paid_units) AS treasury_paid_units, sum(h.refunded_units) AS refunded_units, sum(h.fees_lamports) AS fees_lamports, sum(h.verified_escrowed_units) AS verified_escrowed_units, sum(h.disputed_escrowed_units) AS disputed_escrowed_units, sum(h.verified_charged_units) AS verified_charged_units, sum(h.disputed_charged_units) AS disputed_charged_units, sum(h.verified_worker_paid_units) AS verified_worker_paid_units, sum(h.disputed_worker_paid_units) AS disputed_worker_paid_units, sum(h.verified_treasury_paid_units) AS verified_treasury_paid_units, sum(h.disputed_treasury_paid_units) AS disputed_treasury_paid_units, sum(h.verified_refunded_units) AS verified_refunded_units, sum(h.disputed_refunded_units) AS disputed_refunded_units
  FROM (SELECT created_at / 3600000 AS hour, model, worker, key_fingerprint,
      sum(jobs_verified) AS jobs_verified, sum(jobs_partially_verified) AS jobs_partially_verified, sum(jobs_open) AS jobs_open, sum(jobs_discrepancy) AS jobs_discrepancy, sum(jobs_dropped) AS jobs_dropped, sum(jobs_unverifiable) AS jobs_unverifiable, sum(charged_units) AS charged_units, sum(escrowed_units) AS escrowed_units, sum(worker_paid_units) AS worker_paid_units, sum(treasury_paid_units) AS treasury_paid_units, sum(refunded_units) AS refunded_units, sum(fees_lamports) AS fees_lamports, sum(verified_escrowed_units) AS verified_escrowed_units, sum(disputed_escrowed_units) AS disputed_escrowed_units, sum(verified_charged_units) AS verified_charged_units, sum(disputed_charged_units) AS disputed_charged_units, sum(verified_worker_paid_units) AS verified_worker_paid_units, sum(disputed_worker_paid_units) AS disputed_worker_paid_units, sum(verified_treasury_paid_units) AS verified_treasury_paid_units, sum(disputed_treasury_paid_units) AS disputed_treasury_paid_units, sum(verified_refunded_units) AS verified_refunded_units, sum(disputed_refunded_units) AS disputed_refunded_units
    FROM job_rollup_deltas GROUP BY 1, 2, 3, 4) AS h CROSS JOIN (SELECT 0 AS grain UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6) AS g
  WHERE true
  GROUP BY 1, 2, 3, 4, 5) AS s
  WHERE r.grain = s.grain AND r.day = s.day AND r.model = s.model AND r.worker = s.worker AND r.key_fingerprint = s.key_fingerprint;
  DELETE FROM job_rollup_deltas;
END;