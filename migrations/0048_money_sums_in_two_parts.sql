-- Sums of money past 2^63 base units on SQLite. An amount is at most 2^53 - 1, but a rollup row
-- (`job_rollups`) or a vault's day (`ledger_daily`) kept its sum in one 64-bit integer: 1,024
-- such amounts filled a row, the next write turned it into a float (`+`) or failed (`sum()`:
-- "integer overflow"), and reports over it failed. Each sum of money is now kept as two integers,
-- the low part (amount & (2^32 - 1), kept in [0, 2^32)) and the high part (amount >> 32, taking
-- the carry), joined as a bigint when read (src/db/split-sums.ts).
--
-- The rollups are summed again from `jobs` by the resumable backfill (src/db/rollups.ts): a row
-- that once passed 2^63 may hold a float, or an integer rounded on its way back below 2^63, so
-- no stored sum is trusted; reports read the jobs until it is done. `ledger_daily` is summed
-- again from `ledger_lines` here, for the same reason. Both are derived from rows that are kept,
-- so nothing is lost. The fold trigger's text: rollupTriggersSql() in src/db/rollups.ts (a test
-- checks they are equal); the triggers on `jobs` and `job_rollup_deltas` (one row per job
-- written, each amount within 64 bits) are unchanged.
DROP TRIGGER IF EXISTS `jobs_rollup_fold`;
--> statement-breakpoint
DROP TRIGGER IF EXISTS `ledger_lines_daily_insert`;
--> statement-breakpoint
DROP TRIGGER IF EXISTS `ledger_lines_daily_update`;
--> statement-breakpoint
DROP TRIGGER IF EXISTS `ledger_lines_daily_delete`;
--> statement-breakpoint
DROP TABLE `job_rollups`;
--> statement-breakpoint
CREATE TABLE `job_rollups` (
	`grain` integer NOT NULL,
	`day` integer NOT NULL,
	`model` text NOT NULL,
	`worker` text NOT NULL,
	`key_fingerprint` text NOT NULL,
	`jobs_open` integer DEFAULT 0 NOT NULL,
	`jobs_verified` integer DEFAULT 0 NOT NULL,
	`jobs_partially_verified` integer DEFAULT 0 NOT NULL,
	`jobs_discrepancy` integer DEFAULT 0 NOT NULL,
	`jobs_dropped` integer DEFAULT 0 NOT NULL,
	`jobs_unverifiable` integer DEFAULT 0 NOT NULL,
	`escrowed_units_lo` integer DEFAULT 0 NOT NULL,
	`escrowed_units_hi` integer DEFAULT 0 NOT NULL,
	`charged_units_lo` integer DEFAULT 0 NOT NULL,
	`charged_units_hi` integer DEFAULT 0 NOT NULL,
	`worker_paid_units_lo` integer DEFAULT 0 NOT NULL,
	`worker_paid_units_hi` integer DEFAULT 0 NOT NULL,
	`treasury_paid_units_lo` integer DEFAULT 0 NOT NULL,
	`treasury_paid_units_hi` integer DEFAULT 0 NOT NULL,
	`refunded_units_lo` integer DEFAULT 0 NOT NULL,
	`refunded_units_hi` integer DEFAULT 0 NOT NULL,
	`fees_lamports_lo` integer DEFAULT 0 NOT NULL,
	`fees_lamports_hi` integer DEFAULT 0 NOT NULL,
	`verified_escrowed_units_lo` integer DEFAULT 0 NOT NULL,
	`verified_escrowed_units_hi` integer DEFAULT 0 NOT NULL,
	`verified_charged_units_lo` integer DEFAULT 0 NOT NULL,
	`verified_charged_units_hi` integer DEFAULT 0 NOT NULL,
	`verified_worker_paid_units_lo` integer DEFAULT 0 NOT NULL,
	`verified_worker_paid_units_hi` integer DEFAULT 0 NOT NULL,
	`verified_treasury_paid_units_lo` integer DEFAULT 0 NOT NULL,
	`verified_treasury_paid_units_hi` integer DEFAULT 0 NOT NULL,
	`verified_refunded_units_lo` integer DEFAULT 0 NOT NULL,
	`verified_refunded_units_hi` integer DEFAULT 0 NOT NULL,
	`disputed_escrowed_units_lo` integer DEFAULT 0 NOT NULL,
	`disputed_escrowed_units_hi` integer DEFAULT 0 NOT NULL,
	`disputed_charged_units_lo` integer DEFAULT 0 NOT NULL,
	`disputed_charged_units_hi` integer DEFAULT 0 NOT NULL,
	`disputed_worker_paid_units_lo` integer DEFAULT 0 NOT NULL,
	`disputed_worker_paid_units_hi` integer DEFAULT 0 NOT NULL,
	`disputed_treasury_paid_units_lo` integer DEFAULT 0 NOT NULL,
	`disputed_treasury_paid_units_hi` integer DEFAULT 0 NOT NULL,
	`disputed_refunded_units_lo` integer DEFAULT 0 NOT NULL,
	`disputed_refunded_units_hi` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`grain`, `day`, `model`, `worker`, `key_fingerprint`)
) WITHOUT ROWID;
--> statement-breakpoint
CREATE INDEX `job_rollups_worker` ON `job_rollups` (`grain`,`worker`,`day`);
--> statement-breakpoint
DELETE FROM `job_rollup_deltas`;
--> statement-breakpoint
INSERT OR REPLACE INTO `job_rollups_backfill` (`id`, `next_day`, `last_day`)
  SELECT 1, (SELECT min(`created_at`) FROM `jobs`) / 86400000, (SELECT max(`created_at`) FROM `jobs`) / 86400000
  WHERE EXISTS (SELECT 1 FROM `jobs`);
--> statement-breakpoint
CREATE TRIGGER `jobs_rollup_fold` AFTER INSERT ON `job_rollup_deltas`
  WHEN new.rowid >= 1024
BEGIN
  INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint)
  SELECT s.grain, s.day, s.model, s.worker, s.key_fingerprint FROM (SELECT g.grain AS grain, h.hour * 3600000 / CASE WHEN g.grain >= 4 THEN 3600000 ELSE 86400000 END AS day,
    CASE WHEN g.grain IN (0, 1, 4) THEN h.model ELSE x'' END AS model,
    CASE WHEN g.grain IN (0, 2, 5) THEN h.worker ELSE x'' END AS worker,
    CASE WHEN g.grain IN (0, 3, 6) THEN h.key_fingerprint ELSE x'' END AS key_fingerprint,
    sum(h.jobs_verified) AS jobs_verified, sum(h.jobs_partially_verified) AS jobs_partially_verified, sum(h.jobs_open) AS jobs_open, sum(h.jobs_discrepancy) AS jobs_discrepancy, sum(h.jobs_dropped) AS jobs_dropped, sum(h.jobs_unverifiable) AS jobs_unverifiable, ((sum(h.charged_units_lo)) & 4294967295) AS charged_units_lo, (sum(h.charged_units_hi)) + ((sum(h.charged_units_lo)) >> 32) AS charged_units_hi, ((sum(h.escrowed_units_lo)) & 4294967295) AS escrowed_units_lo, (sum(h.escrowed_units_hi)) + ((sum(h.escrowed_units_lo)) >> 32) AS escrowed_units_hi, ((sum(h.worker_paid_units_lo)) & 4294967295) AS worker_paid_units_lo, (sum(h.worker_paid_units_hi)) + ((sum(h.worker_paid_units_lo)) >> 32) AS worker_paid_units_hi, ((sum(h.treasury_paid_units_lo)) & 4294967295) AS treasury_paid_units_lo, (sum(h.treasury_paid_units_hi)) + ((sum(h.treasury_paid_units_lo)) >> 32) AS treasury_paid_units_hi, ((sum(h.refunded_units_lo)) & 4294967295) AS refunded_units_lo, (sum(h.refunded_units_hi)) + ((sum(h.refunded_units_lo)) >> 32) AS refunded_units_hi, ((sum(h.fees_lamports_lo)) & 4294967295) AS fees_lamports_lo, (sum(h.fees_lamports_hi)) + ((sum(h.fees_lamports_lo)) >> 32) AS fees_lamports_hi, ((sum(h.verified_escrowed_units_lo)) & 4294967295) AS verified_escrowed_units_lo, (sum(h.verified_escrowed_units_hi)) + ((sum(h.verified_escrowed_units_lo)) >> 32) AS verified_escrowed_units_hi, ((sum(h.disputed_escrowed_units_lo)) & 4294967295) AS disputed_escrowed_units_lo, (sum(h.disputed_escrowed_units_hi)) + ((sum(h.disputed_escrowed_units_lo)) >> 32) AS disputed_escrowed_units_hi, ((sum(h.verified_charged_units_lo)) & 4294967295) AS verified_charged_units_lo, (sum(h.verified_charged_units_hi)) + ((sum(h.verified_charged_units_lo)) >> 32) AS verified_charged_units_hi, ((sum(h.disputed_charged_units_lo)) & 4294967295) AS disputed_charged_units_lo, (sum(h.disputed_charged_units_hi)) + ((sum(h.disputed_charged_units_lo)) >> 32) AS disputed_charged_units_hi, ((sum(h.verified_worker_paid_units_lo)) & 4294967295) AS verified_worker_paid_units_lo, (sum(h.verified_worker_paid_units_hi)) + ((sum(h.verified_worker_paid_units_lo)) >> 32) AS verified_worker_paid_units_hi, ((sum(h.disputed_worker_paid_units_lo)) & 4294967295) AS disputed_worker_paid_units_lo, (sum(h.disputed_worker_paid_units_hi)) + ((sum(h.disputed_worker_paid_units_lo)) >> 32) AS disputed_worker_paid_units_hi, ((sum(h.verified_treasury_paid_units_lo)) & 4294967295) AS verified_treasury_paid_units_lo, (sum(h.verified_treasury_paid_units_hi)) + ((sum(h.verified_treasury_paid_units_lo)) >> 32) AS verified_treasury_paid_units_hi, ((sum(h.disputed_treasury_paid_units_lo)) & 4294967295) AS disputed_treasury_paid_units_lo, (sum(h.disputed_treasury_paid_units_hi)) + ((sum(h.disputed_treasury_paid_units_lo)) >> 32) AS disputed_treasury_paid_units_hi, ((sum(h.verified_refunded_units_lo)) & 4294967295) AS verified_refunded_units_lo, (sum(h.verified_refunded_units_hi)) + ((sum(h.verified_refunded_units_lo)) >> 32) AS verified_refunded_units_hi, ((sum(h.disputed_refunded_units_lo)) & 4294967295) AS disputed_refunded_units_lo, (sum(h.disputed_refunded_units_hi)) + ((sum(h.disputed_refunded_units_lo)) >> 32) AS disputed_refunded_units_hi
  FROM (SELECT created_at / 3600000 AS hour, model, worker, key_fingerprint,
      sum(jobs_verified) AS jobs_verified, sum(jobs_partially_verified) AS jobs_partially_verified, sum(jobs_open) AS jobs_open, sum(jobs_discrepancy) AS jobs_discrepancy, sum(jobs_dropped) AS jobs_dropped, sum(jobs_unverifiable) AS jobs_unverifiable, sum(((charged_units) & 4294967295)) AS charged_units_lo, sum(((charged_units) >> 32)) AS charged_units_hi, sum(((escrowed_units) & 4294967295)) AS escrowed_units_lo, sum(((escrowed_units) >> 32)) AS escrowed_units_hi, sum(((worker_paid_units) & 4294967295)) AS worker_paid_units_lo, sum(((worker_paid_units) >> 32)) AS worker_paid_units_hi, sum(((treasury_paid_units) & 4294967295)) AS treasury_paid_units_lo, sum(((treasury_paid_units) >> 32)) AS treasury_paid_units_hi, sum(((refunded_units) & 4294967295)) AS refunded_units_lo, sum(((refunded_units) >> 32)) AS refunded_units_hi, sum(((fees_lamports) & 4294967295)) AS fees_lamports_lo, sum(((fees_lamports) >> 32)) AS fees_lamports_hi, sum(((verified_escrowed_units) & 4294967295)) AS verified_escrowed_units_lo, sum(((verified_escrowed_units) >> 32)) AS verified_escrowed_units_hi, sum(((disputed_escrowed_units) & 4294967295)) AS disputed_escrowed_units_lo, sum(((disputed_escrowed_units) >> 32)) AS disputed_escrowed_units_hi, sum(((verified_charged_units) & 4294967295)) AS verified_charged_units_lo, sum(((verified_charged_units) >> 32)) AS verified_charged_units_hi, sum(((disputed_charged_units) & 4294967295)) AS disputed_charged_units_lo, sum(((disputed_charged_units) >> 32)) AS disputed_charged_units_hi, sum(((verified_worker_paid_units) & 4294967295)) AS verified_worker_paid_units_lo, sum(((verified_worker_paid_units) >> 32)) AS verified_worker_paid_units_hi, sum(((disputed_worker_paid_units) & 4294967295)) AS disputed_worker_paid_units_lo, sum(((disputed_worker_paid_units) >> 32)) AS disputed_worker_paid_units_hi, sum(((verified_treasury_paid_units) & 4294967295)) AS verified_treasury_paid_units_lo, sum(((verified_treasury_paid_units) >> 32)) AS verified_treasury_paid_units_hi, sum(((disputed_treasury_paid_units) & 4294967295)) AS disputed_treasury_paid_units_lo, sum(((disputed_treasury_paid_units) >> 32)) AS disputed_treasury_paid_units_hi, sum(((verified_refunded_units) & 4294967295)) AS verified_refunded_units_lo, sum(((verified_refunded_units) >> 32)) AS verified_refunded_units_hi, sum(((disputed_refunded_units) & 4294967295)) AS disputed_refunded_units_lo, sum(((disputed_refunded_units) >> 32)) AS disputed_refunded_units_hi
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
    charged_units_lo = ((r.charged_units_lo + s.charged_units_lo) & 4294967295),
    charged_units_hi = (r.charged_units_hi + s.charged_units_hi) + ((r.charged_units_lo + s.charged_units_lo) >> 32),
    escrowed_units_lo = ((r.escrowed_units_lo + s.escrowed_units_lo) & 4294967295),
    escrowed_units_hi = (r.escrowed_units_hi + s.escrowed_units_hi) + ((r.escrowed_units_lo + s.escrowed_units_lo) >> 32),
    worker_paid_units_lo = ((r.worker_paid_units_lo + s.worker_paid_units_lo) & 4294967295),
    worker_paid_units_hi = (r.worker_paid_units_hi + s.worker_paid_units_hi) + ((r.worker_paid_units_lo + s.worker_paid_units_lo) >> 32),
    treasury_paid_units_lo = ((r.treasury_paid_units_lo + s.treasury_paid_units_lo) & 4294967295),
    treasury_paid_units_hi = (r.treasury_paid_units_hi + s.treasury_paid_units_hi) + ((r.treasury_paid_units_lo + s.treasury_paid_units_lo) >> 32),
    refunded_units_lo = ((r.refunded_units_lo + s.refunded_units_lo) & 4294967295),
    refunded_units_hi = (r.refunded_units_hi + s.refunded_units_hi) + ((r.refunded_units_lo + s.refunded_units_lo) >> 32),
    fees_lamports_lo = ((r.fees_lamports_lo + s.fees_lamports_lo) & 4294967295),
    fees_lamports_hi = (r.fees_lamports_hi + s.fees_lamports_hi) + ((r.fees_lamports_lo + s.fees_lamports_lo) >> 32),
    verified_escrowed_units_lo = ((r.verified_escrowed_units_lo + s.verified_escrowed_units_lo) & 4294967295),
    verified_escrowed_units_hi = (r.verified_escrowed_units_hi + s.verified_escrowed_units_hi) + ((r.verified_escrowed_units_lo + s.verified_escrowed_units_lo) >> 32),
    disputed_escrowed_units_lo = ((r.disputed_escrowed_units_lo + s.disputed_escrowed_units_lo) & 4294967295),
    disputed_escrowed_units_hi = (r.disputed_escrowed_units_hi + s.disputed_escrowed_units_hi) + ((r.disputed_escrowed_units_lo + s.disputed_escrowed_units_lo) >> 32),
    verified_charged_units_lo = ((r.verified_charged_units_lo + s.verified_charged_units_lo) & 4294967295),
    verified_charged_units_hi = (r.verified_charged_units_hi + s.verified_charged_units_hi) + ((r.verified_charged_units_lo + s.verified_charged_units_lo) >> 32),
    disputed_charged_units_lo = ((r.disputed_charged_units_lo + s.disputed_charged_units_lo) & 4294967295),
    disputed_charged_units_hi = (r.disputed_charged_units_hi + s.disputed_charged_units_hi) + ((r.disputed_charged_units_lo + s.disputed_charged_units_lo) >> 32),
    verified_worker_paid_units_lo = ((r.verified_worker_paid_units_lo + s.verified_worker_paid_units_lo) & 4294967295),
    verified_worker_paid_units_hi = (r.verified_worker_paid_units_hi + s.verified_worker_paid_units_hi) + ((r.verified_worker_paid_units_lo + s.verified_worker_paid_units_lo) >> 32),
    disputed_worker_paid_units_lo = ((r.disputed_worker_paid_units_lo + s.disputed_worker_paid_units_lo) & 4294967295),
    disputed_worker_paid_units_hi = (r.disputed_worker_paid_units_hi + s.disputed_worker_paid_units_hi) + ((r.disputed_worker_paid_units_lo + s.disputed_worker_paid_units_lo) >> 32),
    verified_treasury_paid_units_lo = ((r.verified_treasury_paid_units_lo + s.verified_treasury_paid_units_lo) & 4294967295),
    verified_treasury_paid_units_hi = (r.verified_treasury_paid_units_hi + s.verified_treasury_paid_units_hi) + ((r.verified_treasury_paid_units_lo + s.verified_treasury_paid_units_lo) >> 32),
    disputed_treasury_paid_units_lo = ((r.disputed_treasury_paid_units_lo + s.disputed_treasury_paid_units_lo) & 4294967295),
    disputed_treasury_paid_units_hi = (r.disputed_treasury_paid_units_hi + s.disputed_treasury_paid_units_hi) + ((r.disputed_treasury_paid_units_lo + s.disputed_treasury_paid_units_lo) >> 32),
    verified_refunded_units_lo = ((r.verified_refunded_units_lo + s.verified_refunded_units_lo) & 4294967295),
    verified_refunded_units_hi = (r.verified_refunded_units_hi + s.verified_refunded_units_hi) + ((r.verified_refunded_units_lo + s.verified_refunded_units_lo) >> 32),
    disputed_refunded_units_lo = ((r.disputed_refunded_units_lo + s.disputed_refunded_units_lo) & 4294967295),
    disputed_refunded_units_hi = (r.disputed_refunded_units_hi + s.disputed_refunded_units_hi) + ((r.disputed_refunded_units_lo + s.disputed_refunded_units_lo) >> 32)
  FROM (SELECT g.grain AS grain, h.hour * 3600000 / CASE WHEN g.grain >= 4 THEN 3600000 ELSE 86400000 END AS day,
    CASE WHEN g.grain IN (0, 1, 4) THEN h.model ELSE x'' END AS model,
    CASE WHEN g.grain IN (0, 2, 5) THEN h.worker ELSE x'' END AS worker,
    CASE WHEN g.grain IN (0, 3, 6) THEN h.key_fingerprint ELSE x'' END AS key_fingerprint,
    sum(h.jobs_verified) AS jobs_verified, sum(h.jobs_partially_verified) AS jobs_partially_verified, sum(h.jobs_open) AS jobs_open, sum(h.jobs_discrepancy) AS jobs_discrepancy, sum(h.jobs_dropped) AS jobs_dropped, sum(h.jobs_unverifiable) AS jobs_unverifiable, ((sum(h.charged_units_lo)) & 4294967295) AS charged_units_lo, (sum(h.charged_units_hi)) + ((sum(h.charged_units_lo)) >> 32) AS charged_units_hi, ((sum(h.escrowed_units_lo)) & 4294967295) AS escrowed_units_lo, (sum(h.escrowed_units_hi)) + ((sum(h.escrowed_units_lo)) >> 32) AS escrowed_units_hi, ((sum(h.worker_paid_units_lo)) & 4294967295) AS worker_paid_units_lo, (sum(h.worker_paid_units_hi)) + ((sum(h.worker_paid_units_lo)) >> 32) AS worker_paid_units_hi, ((sum(h.treasury_paid_units_lo)) & 4294967295) AS treasury_paid_units_lo, (sum(h.treasury_paid_units_hi)) + ((sum(h.treasury_paid_units_lo)) >> 32) AS treasury_paid_units_hi, ((sum(h.refunded_units_lo)) & 4294967295) AS refunded_units_lo, (sum(h.refunded_units_hi)) + ((sum(h.refunded_units_lo)) >> 32) AS refunded_units_hi, ((sum(h.fees_lamports_lo)) & 4294967295) AS fees_lamports_lo, (sum(h.fees_lamports_hi)) + ((sum(h.fees_lamports_lo)) >> 32) AS fees_lamports_hi, ((sum(h.verified_escrowed_units_lo)) & 4294967295) AS verified_escrowed_units_lo, (sum(h.verified_escrowed_units_hi)) + ((sum(h.verified_escrowed_units_lo)) >> 32) AS verified_escrowed_units_hi, ((sum(h.disputed_escrowed_units_lo)) & 4294967295) AS disputed_escrowed_units_lo, (sum(h.disputed_escrowed_units_hi)) + ((sum(h.disputed_escrowed_units_lo)) >> 32) AS disputed_escrowed_units_hi, ((sum(h.verified_charged_units_lo)) & 4294967295) AS verified_charged_units_lo, (sum(h.verified_charged_units_hi)) + ((sum(h.verified_charged_units_lo)) >> 32) AS verified_charged_units_hi, ((sum(h.disputed_charged_units_lo)) & 4294967295) AS disputed_charged_units_lo, (sum(h.disputed_charged_units_hi)) + ((sum(h.disputed_charged_units_lo)) >> 32) AS disputed_charged_units_hi, ((sum(h.verified_worker_paid_units_lo)) & 4294967295) AS verified_worker_paid_units_lo, (sum(h.verified_worker_paid_units_hi)) + ((sum(h.verified_worker_paid_units_lo)) >> 32) AS verified_worker_paid_units_hi, ((sum(h.disputed_worker_paid_units_lo)) & 4294967295) AS disputed_worker_paid_units_lo, (sum(h.disputed_worker_paid_units_hi)) + ((sum(h.disputed_worker_paid_units_lo)) >> 32) AS disputed_worker_paid_units_hi, ((sum(h.verified_treasury_paid_units_lo)) & 4294967295) AS verified_treasury_paid_units_lo, (sum(h.verified_treasury_paid_units_hi)) + ((sum(h.verified_treasury_paid_units_lo)) >> 32) AS verified_treasury_paid_units_hi, ((sum(h.disputed_treasury_paid_units_lo)) & 4294967295) AS disputed_treasury_paid_units_lo, (sum(h.disputed_treasury_paid_units_hi)) + ((sum(h.disputed_treasury_paid_units_lo)) >> 32) AS disputed_treasury_paid_units_hi, ((sum(h.verified_refunded_units_lo)) & 4294967295) AS verified_refunded_units_lo, (sum(h.verified_refunded_units_hi)) + ((sum(h.verified_refunded_units_lo)) >> 32) AS verified_refunded_units_hi, ((sum(h.disputed_refunded_units_lo)) & 4294967295) AS disputed_refunded_units_lo, (sum(h.disputed_refunded_units_hi)) + ((sum(h.disputed_refunded_units_lo)) >> 32) AS disputed_refunded_units_hi
  FROM (SELECT created_at / 3600000 AS hour, model, worker, key_fingerprint,
      sum(jobs_verified) AS jobs_verified, sum(jobs_partially_verified) AS jobs_partially_verified, sum(jobs_open) AS jobs_open, sum(jobs_discrepancy) AS jobs_discrepancy, sum(jobs_dropped) AS jobs_dropped, sum(jobs_unverifiable) AS jobs_unverifiable, sum(((charged_units) & 4294967295)) AS charged_units_lo, sum(((charged_units) >> 32)) AS charged_units_hi, sum(((escrowed_units) & 4294967295)) AS escrowed_units_lo, sum(((escrowed_units) >> 32)) AS escrowed_units_hi, sum(((worker_paid_units) & 4294967295)) AS worker_paid_units_lo, sum(((worker_paid_units) >> 32)) AS worker_paid_units_hi, sum(((treasury_paid_units) & 4294967295)) AS treasury_paid_units_lo, sum(((treasury_paid_units) >> 32)) AS treasury_paid_units_hi, sum(((refunded_units) & 4294967295)) AS refunded_units_lo, sum(((refunded_units) >> 32)) AS refunded_units_hi, sum(((fees_lamports) & 4294967295)) AS fees_lamports_lo, sum(((fees_lamports) >> 32)) AS fees_lamports_hi, sum(((verified_escrowed_units) & 4294967295)) AS verified_escrowed_units_lo, sum(((verified_escrowed_units) >> 32)) AS verified_escrowed_units_hi, sum(((disputed_escrowed_units) & 4294967295)) AS disputed_escrowed_units_lo, sum(((disputed_escrowed_units) >> 32)) AS disputed_escrowed_units_hi, sum(((verified_charged_units) & 4294967295)) AS verified_charged_units_lo, sum(((verified_charged_units) >> 32)) AS verified_charged_units_hi, sum(((disputed_charged_units) & 4294967295)) AS disputed_charged_units_lo, sum(((disputed_charged_units) >> 32)) AS disputed_charged_units_hi, sum(((verified_worker_paid_units) & 4294967295)) AS verified_worker_paid_units_lo, sum(((verified_worker_paid_units) >> 32)) AS verified_worker_paid_units_hi, sum(((disputed_worker_paid_units) & 4294967295)) AS disputed_worker_paid_units_lo, sum(((disputed_worker_paid_units) >> 32)) AS disputed_worker_paid_units_hi, sum(((verified_treasury_paid_units) & 4294967295)) AS verified_treasury_paid_units_lo, sum(((verified_treasury_paid_units) >> 32)) AS verified_treasury_paid_units_hi, sum(((disputed_treasury_paid_units) & 4294967295)) AS disputed_treasury_paid_units_lo, sum(((disputed_treasury_paid_units) >> 32)) AS disputed_treasury_paid_units_hi, sum(((verified_refunded_units) & 4294967295)) AS verified_refunded_units_lo, sum(((verified_refunded_units) >> 32)) AS verified_refunded_units_hi, sum(((disputed_refunded_units) & 4294967295)) AS disputed_refunded_units_lo, sum(((disputed_refunded_units) >> 32)) AS disputed_refunded_units_hi
    FROM job_rollup_deltas GROUP BY 1, 2, 3, 4) AS h CROSS JOIN (SELECT 0 AS grain UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6) AS g
  WHERE true
  GROUP BY 1, 2, 3, 4, 5) AS s
  WHERE r.grain = s.grain AND r.day = s.day AND r.model = s.model AND r.worker = s.worker AND r.key_fingerprint = s.key_fingerprint;
  DELETE FROM job_rollup_deltas;
END;
--> statement-breakpoint
DROP TABLE `ledger_daily`;
--> statement-breakpoint
CREATE TABLE `ledger_daily` (
	`vault` text NOT NULL,
	`day` integer NOT NULL,
	`kind` text NOT NULL,
	`lines` integer NOT NULL,
	`units_lo` integer DEFAULT 0 NOT NULL,
	`units_hi` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`vault`, `day`, `kind`)
) WITHOUT ROWID;
--> statement-breakpoint
INSERT INTO `ledger_daily` (`vault`, `day`, `kind`, `lines`, `units_lo`, `units_hi`)
  SELECT vault, day, kind, lines, lo & 4294967295, hi + (lo >> 32) FROM (
    SELECT vault, block_time / 86400 AS day, kind, count(*) AS lines,
      sum(coalesce(delta_units, 0) & 4294967295) AS lo, sum(coalesce(delta_units, 0) >> 32) AS hi
    FROM `ledger_lines` WHERE kind IS NOT NULL AND block_time IS NOT NULL GROUP BY 1, 2, 3);
--> statement-breakpoint
CREATE TRIGGER `ledger_lines_daily_insert` AFTER INSERT ON `ledger_lines`
WHEN new.kind IS NOT NULL AND new.block_time IS NOT NULL BEGIN
  INSERT INTO ledger_daily (vault, day, kind, lines, units_lo, units_hi)
  SELECT new.vault, new.block_time / 86400, new.kind, 1, (coalesce(new.delta_units, 0)) & 4294967295, (coalesce(new.delta_units, 0)) >> 32 WHERE true
  ON CONFLICT (vault, day, kind) DO UPDATE SET lines = lines + excluded.lines,
    units_lo = (units_lo + excluded.units_lo) & 4294967295,
    units_hi = units_hi + excluded.units_hi + ((units_lo + excluded.units_lo) >> 32);
END;
--> statement-breakpoint
CREATE TRIGGER `ledger_lines_daily_update` AFTER UPDATE OF kind, delta_units, block_time ON `ledger_lines`
WHEN old.kind IS NOT new.kind OR old.delta_units IS NOT new.delta_units OR old.block_time IS NOT new.block_time BEGIN
  INSERT INTO ledger_daily (vault, day, kind, lines, units_lo, units_hi)
  SELECT old.vault, old.block_time / 86400, old.kind, -1, (-coalesce(old.delta_units, 0)) & 4294967295, (-coalesce(old.delta_units, 0)) >> 32
  WHERE old.kind IS NOT NULL AND old.block_time IS NOT NULL
  ON CONFLICT (vault, day, kind) DO UPDATE SET lines = lines + excluded.lines,
    units_lo = (units_lo + excluded.units_lo) & 4294967295,
    units_hi = units_hi + excluded.units_hi + ((units_lo + excluded.units_lo) >> 32);
  INSERT INTO ledger_daily (vault, day, kind, lines, units_lo, units_hi)
  SELECT new.vault, new.block_time / 86400, new.kind, 1, (coalesce(new.delta_units, 0)) & 4294967295, (coalesce(new.delta_units, 0)) >> 32
  WHERE new.kind IS NOT NULL AND new.block_time IS NOT NULL
  ON CONFLICT (vault, day, kind) DO UPDATE SET lines = lines + excluded.lines,
    units_lo = (units_lo + excluded.units_lo) & 4294967295,
    units_hi = units_hi + excluded.units_hi + ((units_lo + excluded.units_lo) >> 32);
END;
--> statement-breakpoint
CREATE TRIGGER `ledger_lines_daily_delete` AFTER DELETE ON `ledger_lines`
WHEN old.kind IS NOT NULL AND old.block_time IS NOT NULL BEGIN
  INSERT INTO ledger_daily (vault, day, kind, lines, units_lo, units_hi)
  SELECT old.vault, old.block_time / 86400, old.kind, -1, (-coalesce(old.delta_units, 0)) & 4294967295, (-coalesce(old.delta_units, 0)) >> 32 WHERE true
  ON CONFLICT (vault, day, kind) DO UPDATE SET lines = lines + excluded.lines,
    units_lo = (units_lo + excluded.units_lo) & 4294967295,
    units_hi = units_hi + excluded.units_hi + ((units_lo + excluded.units_lo) >> 32);
END;
