-- Incremental rollups of `jobs` for reports (issue 17). Triggers on `jobs` keep `job_rollups`
-- in the same transaction as every insert, verdict change, re-verification and delete: each
-- write subtracts the old row's contribution and adds the new row's, so the rollups cannot
-- disagree with the jobs. Each job counts in four rows: grain 0 (day, model, worker, key) and
-- the marginals grain 1 (day, model), 2 (day, worker), 3 (day, key). x'' (an empty BLOB, never
-- equal to any TEXT) stands for a dimension not recorded or not in the grain.
-- WITHOUT ROWID: the upsert and the report scans read the primary key B-tree only.
--
-- PostgreSQL mirror (same names): dimensions as nullable text with
--   UNIQUE NULLS NOT DISTINCT (grain, day, model, worker, key_fingerprint)   -- PostgreSQL 15+
-- and one row trigger function, AFTER INSERT OR UPDATE OR DELETE ON jobs FOR EACH ROW, that
-- runs the same INSERT ... SELECT FROM (VALUES (0),(1),(2),(3)) ... ON CONFLICT (...) DO UPDATE
-- SET f = job_rollups.f + EXCLUDED.f with OLD's figures negated (UPDATE, DELETE) and NEW's
-- added (INSERT, UPDATE); day = floor(created_at / 86400000); verdict booleans as ::int.
-- The backfill there is the same per-day DELETE + INSERT ... SELECT ... GROUP BY
-- (src/db/rollups.ts) under the same job_rollups_backfill cursor.
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
	`escrowed_units` integer DEFAULT 0 NOT NULL,
	`charged_units` integer DEFAULT 0 NOT NULL,
	`worker_paid_units` integer DEFAULT 0 NOT NULL,
	`treasury_paid_units` integer DEFAULT 0 NOT NULL,
	`refunded_units` integer DEFAULT 0 NOT NULL,
	`fees_lamports` integer DEFAULT 0 NOT NULL,
	`verified_escrowed_units` integer DEFAULT 0 NOT NULL,
	`verified_charged_units` integer DEFAULT 0 NOT NULL,
	`verified_worker_paid_units` integer DEFAULT 0 NOT NULL,
	`verified_treasury_paid_units` integer DEFAULT 0 NOT NULL,
	`verified_refunded_units` integer DEFAULT 0 NOT NULL,
	`disputed_escrowed_units` integer DEFAULT 0 NOT NULL,
	`disputed_charged_units` integer DEFAULT 0 NOT NULL,
	`disputed_worker_paid_units` integer DEFAULT 0 NOT NULL,
	`disputed_treasury_paid_units` integer DEFAULT 0 NOT NULL,
	`disputed_refunded_units` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`grain`, `day`, `model`, `worker`, `key_fingerprint`)
) WITHOUT ROWID;
--> statement-breakpoint
CREATE INDEX `job_rollups_worker` ON `job_rollups` (`grain`,`worker`,`day`);--> statement-breakpoint
CREATE TABLE `job_rollups_backfill` (
	`id` integer PRIMARY KEY NOT NULL,
	`next_day` integer NOT NULL,
	`last_day` integer NOT NULL
);--> statement-breakpoint
CREATE TRIGGER `jobs_rollup_insert` AFTER INSERT ON `jobs` BEGIN
  INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint,
    jobs_open, jobs_verified, jobs_partially_verified, jobs_discrepancy,
    jobs_dropped, jobs_unverifiable, escrowed_units, charged_units,
    worker_paid_units, treasury_paid_units, refunded_units, fees_lamports,
    verified_escrowed_units, verified_charged_units, verified_worker_paid_units, verified_treasury_paid_units,
    verified_refunded_units, disputed_escrowed_units, disputed_charged_units, disputed_worker_paid_units,
    disputed_treasury_paid_units, disputed_refunded_units)
  SELECT g.grain, new.created_at / 86400000,
    CASE WHEN g.grain IN (0, 1) THEN coalesce(new.model, x'') ELSE x'' END,
    CASE WHEN g.grain IN (0, 2) THEN coalesce(new.worker, x'') ELSE x'' END,
    CASE WHEN g.grain IN (0, 3) THEN coalesce(new.key_fingerprint, x'') ELSE x'' END,
    (new.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement')),
    (new.verdict = 'verified'),
    (new.verdict = 'partially_verified'),
    (new.verdict = 'discrepancy'),
    (new.verdict = 'dropped'),
    (new.verdict = 'unverifiable'),
    coalesce(new.escrowed_units, 0),
    coalesce(new.charged_units, 0),
    coalesce(new.worker_paid_units, 0),
    coalesce(new.treasury_paid_units, 0),
    coalesce(new.refunded_units, 0),
    coalesce(new.fees_lamports, 0),
    CASE WHEN new.verdict = 'verified' THEN coalesce(new.escrowed_units, 0) ELSE 0 END,
    CASE WHEN new.verdict = 'verified' THEN coalesce(new.charged_units, 0) ELSE 0 END,
    CASE WHEN new.verdict = 'verified' THEN coalesce(new.worker_paid_units, 0) ELSE 0 END,
    CASE WHEN new.verdict = 'verified' THEN coalesce(new.treasury_paid_units, 0) ELSE 0 END,
    CASE WHEN new.verdict = 'verified' THEN coalesce(new.refunded_units, 0) ELSE 0 END,
    CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN coalesce(new.escrowed_units, 0) ELSE 0 END,
    CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN coalesce(new.charged_units, 0) ELSE 0 END,
    CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN coalesce(new.worker_paid_units, 0) ELSE 0 END,
    CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN coalesce(new.treasury_paid_units, 0) ELSE 0 END,
    CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN coalesce(new.refunded_units, 0) ELSE 0 END
  FROM (SELECT 0 AS grain UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) AS g WHERE true
  ON CONFLICT (grain, day, model, worker, key_fingerprint) DO UPDATE SET
    jobs_open = jobs_open + excluded.jobs_open,
    jobs_verified = jobs_verified + excluded.jobs_verified,
    jobs_partially_verified = jobs_partially_verified + excluded.jobs_partially_verified,
    jobs_discrepancy = jobs_discrepancy + excluded.jobs_discrepancy,
    jobs_dropped = jobs_dropped + excluded.jobs_dropped,
    jobs_unverifiable = jobs_unverifiable + excluded.jobs_unverifiable,
    escrowed_units = escrowed_units + excluded.escrowed_units,
    charged_units = charged_units + excluded.charged_units,
    worker_paid_units = worker_paid_units + excluded.worker_paid_units,
    treasury_paid_units = treasury_paid_units + excluded.treasury_paid_units,
    refunded_units = refunded_units + excluded.refunded_units,
    fees_lamports = fees_lamports + excluded.fees_lamports,
    verified_escrowed_units = verified_escrowed_units + excluded.verified_escrowed_units,
    verified_charged_units = verified_charged_units + excluded.verified_charged_units,
    verified_worker_paid_units = verified_worker_paid_units + excluded.verified_worker_paid_units,
    verified_treasury_paid_units = verified_treasury_paid_units + excluded.verified_treasury_paid_units,
    verified_refunded_units = verified_refunded_units + excluded.verified_refunded_units,
    disputed_escrowed_units = disputed_escrowed_units + excluded.disputed_escrowed_units,
    disputed_charged_units = disputed_charged_units + excluded.disputed_charged_units,
    disputed_worker_paid_units = disputed_worker_paid_units + excluded.disputed_worker_paid_units,
    disputed_treasury_paid_units = disputed_treasury_paid_units + excluded.disputed_treasury_paid_units,
    disputed_refunded_units = disputed_refunded_units + excluded.disputed_refunded_units;
END;
--> statement-breakpoint
CREATE TRIGGER `jobs_rollup_update` AFTER UPDATE OF verdict, created_at, model, worker, key_fingerprint, escrowed_units, charged_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports ON `jobs`
  WHEN new.created_at / 86400000 = old.created_at / 86400000 AND new.model IS old.model
    AND new.worker IS old.worker AND new.key_fingerprint IS old.key_fingerprint
    AND (CASE WHEN old.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement') THEN 'open' ELSE old.verdict END IS NOT CASE WHEN new.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement') THEN 'open' ELSE new.verdict END
    OR old.escrowed_units IS NOT new.escrowed_units
    OR old.charged_units IS NOT new.charged_units
    OR old.worker_paid_units IS NOT new.worker_paid_units
    OR old.treasury_paid_units IS NOT new.treasury_paid_units
    OR old.refunded_units IS NOT new.refunded_units
    OR old.fees_lamports IS NOT new.fees_lamports)
BEGIN
  INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint,
    jobs_open, jobs_verified, jobs_partially_verified, jobs_discrepancy,
    jobs_dropped, jobs_unverifiable, escrowed_units, charged_units,
    worker_paid_units, treasury_paid_units, refunded_units, fees_lamports,
    verified_escrowed_units, verified_charged_units, verified_worker_paid_units, verified_treasury_paid_units,
    verified_refunded_units, disputed_escrowed_units, disputed_charged_units, disputed_worker_paid_units,
    disputed_treasury_paid_units, disputed_refunded_units)
  SELECT g.grain, new.created_at / 86400000,
    CASE WHEN g.grain IN (0, 1) THEN coalesce(new.model, x'') ELSE x'' END,
    CASE WHEN g.grain IN (0, 2) THEN coalesce(new.worker, x'') ELSE x'' END,
    CASE WHEN g.grain IN (0, 3) THEN coalesce(new.key_fingerprint, x'') ELSE x'' END,
    (new.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement')) - (old.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement')),
    (new.verdict = 'verified') - (old.verdict = 'verified'),
    (new.verdict = 'partially_verified') - (old.verdict = 'partially_verified'),
    (new.verdict = 'discrepancy') - (old.verdict = 'discrepancy'),
    (new.verdict = 'dropped') - (old.verdict = 'dropped'),
    (new.verdict = 'unverifiable') - (old.verdict = 'unverifiable'),
    coalesce(new.escrowed_units, 0) - coalesce(old.escrowed_units, 0),
    coalesce(new.charged_units, 0) - coalesce(old.charged_units, 0),
    coalesce(new.worker_paid_units, 0) - coalesce(old.worker_paid_units, 0),
    coalesce(new.treasury_paid_units, 0) - coalesce(old.treasury_paid_units, 0),
    coalesce(new.refunded_units, 0) - coalesce(old.refunded_units, 0),
    coalesce(new.fees_lamports, 0) - coalesce(old.fees_lamports, 0),
    CASE WHEN new.verdict = 'verified' THEN coalesce(new.escrowed_units, 0) ELSE 0 END - CASE WHEN old.verdict = 'verified' THEN coalesce(old.escrowed_units, 0) ELSE 0 END,
    CASE WHEN new.verdict = 'verified' THEN coalesce(new.charged_units, 0) ELSE 0 END - CASE WHEN old.verdict = 'verified' THEN coalesce(old.charged_units, 0) ELSE 0 END,
    CASE WHEN new.verdict = 'verified' THEN coalesce(new.worker_paid_units, 0) ELSE 0 END - CASE WHEN old.verdict = 'verified' THEN coalesce(old.worker_paid_units, 0) ELSE 0 END,
    CASE WHEN new.verdict = 'verified' THEN coalesce(new.treasury_paid_units, 0) ELSE 0 END - CASE WHEN old.verdict = 'verified' THEN coalesce(old.treasury_paid_units, 0) ELSE 0 END,
    CASE WHEN new.verdict = 'verified' THEN coalesce(new.refunded_units, 0) ELSE 0 END - CASE WHEN old.verdict = 'verified' THEN coalesce(old.refunded_units, 0) ELSE 0 END,
    CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN coalesce(new.escrowed_units, 0) ELSE 0 END - CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN coalesce(old.escrowed_units, 0) ELSE 0 END,
    CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN coalesce(new.charged_units, 0) ELSE 0 END - CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN coalesce(old.charged_units, 0) ELSE 0 END,
    CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN coalesce(new.worker_paid_units, 0) ELSE 0 END - CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN coalesce(old.worker_paid_units, 0) ELSE 0 END,
    CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN coalesce(new.treasury_paid_units, 0) ELSE 0 END - CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN coalesce(old.treasury_paid_units, 0) ELSE 0 END,
    CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN coalesce(new.refunded_units, 0) ELSE 0 END - CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN coalesce(old.refunded_units, 0) ELSE 0 END
  FROM (SELECT 0 AS grain UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) AS g WHERE true
  ON CONFLICT (grain, day, model, worker, key_fingerprint) DO UPDATE SET
    jobs_open = jobs_open + excluded.jobs_open,
    jobs_verified = jobs_verified + excluded.jobs_verified,
    jobs_partially_verified = jobs_partially_verified + excluded.jobs_partially_verified,
    jobs_discrepancy = jobs_discrepancy + excluded.jobs_discrepancy,
    jobs_dropped = jobs_dropped + excluded.jobs_dropped,
    jobs_unverifiable = jobs_unverifiable + excluded.jobs_unverifiable,
    escrowed_units = escrowed_units + excluded.escrowed_units,
    charged_units = charged_units + excluded.charged_units,
    worker_paid_units = worker_paid_units + excluded.worker_paid_units,
    treasury_paid_units = treasury_paid_units + excluded.treasury_paid_units,
    refunded_units = refunded_units + excluded.refunded_units,
    fees_lamports = fees_lamports + excluded.fees_lamports,
    verified_escrowed_units = verified_escrowed_units + excluded.verified_escrowed_units,
    verified_charged_units = verified_charged_units + excluded.verified_charged_units,
    verified_worker_paid_units = verified_worker_paid_units + excluded.verified_worker_paid_units,
    verified_treasury_paid_units = verified_treasury_paid_units + excluded.verified_treasury_paid_units,
    verified_refunded_units = verified_refunded_units + excluded.verified_refunded_units,
    disputed_escrowed_units = disputed_escrowed_units + excluded.disputed_escrowed_units,
    disputed_charged_units = disputed_charged_units + excluded.disputed_charged_units,
    disputed_worker_paid_units = disputed_worker_paid_units + excluded.disputed_worker_paid_units,
    disputed_treasury_paid_units = disputed_treasury_paid_units + excluded.disputed_treasury_paid_units,
    disputed_refunded_units = disputed_refunded_units + excluded.disputed_refunded_units;
END;
--> statement-breakpoint
CREATE TRIGGER `jobs_rollup_move` AFTER UPDATE OF verdict, created_at, model, worker, key_fingerprint, escrowed_units, charged_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports ON `jobs`
  WHEN NOT (new.created_at / 86400000 = old.created_at / 86400000 AND new.model IS old.model
    AND new.worker IS old.worker AND new.key_fingerprint IS old.key_fingerprint)
BEGIN
  INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint,
    jobs_open, jobs_verified, jobs_partially_verified, jobs_discrepancy,
    jobs_dropped, jobs_unverifiable, escrowed_units, charged_units,
    worker_paid_units, treasury_paid_units, refunded_units, fees_lamports,
    verified_escrowed_units, verified_charged_units, verified_worker_paid_units, verified_treasury_paid_units,
    verified_refunded_units, disputed_escrowed_units, disputed_charged_units, disputed_worker_paid_units,
    disputed_treasury_paid_units, disputed_refunded_units)
  SELECT g.grain, old.created_at / 86400000,
    CASE WHEN g.grain IN (0, 1) THEN coalesce(old.model, x'') ELSE x'' END,
    CASE WHEN g.grain IN (0, 2) THEN coalesce(old.worker, x'') ELSE x'' END,
    CASE WHEN g.grain IN (0, 3) THEN coalesce(old.key_fingerprint, x'') ELSE x'' END,
    -(old.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement')),
    -(old.verdict = 'verified'),
    -(old.verdict = 'partially_verified'),
    -(old.verdict = 'discrepancy'),
    -(old.verdict = 'dropped'),
    -(old.verdict = 'unverifiable'),
    -coalesce(old.escrowed_units, 0),
    -coalesce(old.charged_units, 0),
    -coalesce(old.worker_paid_units, 0),
    -coalesce(old.treasury_paid_units, 0),
    -coalesce(old.refunded_units, 0),
    -coalesce(old.fees_lamports, 0),
    -CASE WHEN old.verdict = 'verified' THEN coalesce(old.escrowed_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict = 'verified' THEN coalesce(old.charged_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict = 'verified' THEN coalesce(old.worker_paid_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict = 'verified' THEN coalesce(old.treasury_paid_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict = 'verified' THEN coalesce(old.refunded_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN coalesce(old.escrowed_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN coalesce(old.charged_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN coalesce(old.worker_paid_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN coalesce(old.treasury_paid_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN coalesce(old.refunded_units, 0) ELSE 0 END
  FROM (SELECT 0 AS grain UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) AS g WHERE true
  ON CONFLICT (grain, day, model, worker, key_fingerprint) DO UPDATE SET
    jobs_open = jobs_open + excluded.jobs_open,
    jobs_verified = jobs_verified + excluded.jobs_verified,
    jobs_partially_verified = jobs_partially_verified + excluded.jobs_partially_verified,
    jobs_discrepancy = jobs_discrepancy + excluded.jobs_discrepancy,
    jobs_dropped = jobs_dropped + excluded.jobs_dropped,
    jobs_unverifiable = jobs_unverifiable + excluded.jobs_unverifiable,
    escrowed_units = escrowed_units + excluded.escrowed_units,
    charged_units = charged_units + excluded.charged_units,
    worker_paid_units = worker_paid_units + excluded.worker_paid_units,
    treasury_paid_units = treasury_paid_units + excluded.treasury_paid_units,
    refunded_units = refunded_units + excluded.refunded_units,
    fees_lamports = fees_lamports + excluded.fees_lamports,
    verified_escrowed_units = verified_escrowed_units + excluded.verified_escrowed_units,
    verified_charged_units = verified_charged_units + excluded.verified_charged_units,
    verified_worker_paid_units = verified_worker_paid_units + excluded.verified_worker_paid_units,
    verified_treasury_paid_units = verified_treasury_paid_units + excluded.verified_treasury_paid_units,
    verified_refunded_units = verified_refunded_units + excluded.verified_refunded_units,
    disputed_escrowed_units = disputed_escrowed_units + excluded.disputed_escrowed_units,
    disputed_charged_units = disputed_charged_units + excluded.disputed_charged_units,
    disputed_worker_paid_units = disputed_worker_paid_units + excluded.disputed_worker_paid_units,
    disputed_treasury_paid_units = disputed_treasury_paid_units + excluded.disputed_treasury_paid_units,
    disputed_refunded_units = disputed_refunded_units + excluded.disputed_refunded_units;
  INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint,
    jobs_open, jobs_verified, jobs_partially_verified, jobs_discrepancy,
    jobs_dropped, jobs_unverifiable, escrowed_units, charged_units,
    worker_paid_units, treasury_paid_units, refunded_units, fees_lamports,
    verified_escrowed_units, verified_charged_units, verified_worker_paid_units, verified_treasury_paid_units,
    verified_refunded_units, disputed_escrowed_units, disputed_charged_units, disputed_worker_paid_units,
    disputed_treasury_paid_units, disputed_refunded_units)
  SELECT g.grain, new.created_at / 86400000,
    CASE WHEN g.grain IN (0, 1) THEN coalesce(new.model, x'') ELSE x'' END,
    CASE WHEN g.grain IN (0, 2) THEN coalesce(new.worker, x'') ELSE x'' END,
    CASE WHEN g.grain IN (0, 3) THEN coalesce(new.key_fingerprint, x'') ELSE x'' END,
    (new.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement')),
    (new.verdict = 'verified'),
    (new.verdict = 'partially_verified'),
    (new.verdict = 'discrepancy'),
    (new.verdict = 'dropped'),
    (new.verdict = 'unverifiable'),
    coalesce(new.escrowed_units, 0),
    coalesce(new.charged_units, 0),
    coalesce(new.worker_paid_units, 0),
    coalesce(new.treasury_paid_units, 0),
    coalesce(new.refunded_units, 0),
    coalesce(new.fees_lamports, 0),
    CASE WHEN new.verdict = 'verified' THEN coalesce(new.escrowed_units, 0) ELSE 0 END,
    CASE WHEN new.verdict = 'verified' THEN coalesce(new.charged_units, 0) ELSE 0 END,
    CASE WHEN new.verdict = 'verified' THEN coalesce(new.worker_paid_units, 0) ELSE 0 END,
    CASE WHEN new.verdict = 'verified' THEN coalesce(new.treasury_paid_units, 0) ELSE 0 END,
    CASE WHEN new.verdict = 'verified' THEN coalesce(new.refunded_units, 0) ELSE 0 END,
    CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN coalesce(new.escrowed_units, 0) ELSE 0 END,
    CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN coalesce(new.charged_units, 0) ELSE 0 END,
    CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN coalesce(new.worker_paid_units, 0) ELSE 0 END,
    CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN coalesce(new.treasury_paid_units, 0) ELSE 0 END,
    CASE WHEN new.verdict IN ('discrepancy', 'dropped') THEN coalesce(new.refunded_units, 0) ELSE 0 END
  FROM (SELECT 0 AS grain UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) AS g WHERE true
  ON CONFLICT (grain, day, model, worker, key_fingerprint) DO UPDATE SET
    jobs_open = jobs_open + excluded.jobs_open,
    jobs_verified = jobs_verified + excluded.jobs_verified,
    jobs_partially_verified = jobs_partially_verified + excluded.jobs_partially_verified,
    jobs_discrepancy = jobs_discrepancy + excluded.jobs_discrepancy,
    jobs_dropped = jobs_dropped + excluded.jobs_dropped,
    jobs_unverifiable = jobs_unverifiable + excluded.jobs_unverifiable,
    escrowed_units = escrowed_units + excluded.escrowed_units,
    charged_units = charged_units + excluded.charged_units,
    worker_paid_units = worker_paid_units + excluded.worker_paid_units,
    treasury_paid_units = treasury_paid_units + excluded.treasury_paid_units,
    refunded_units = refunded_units + excluded.refunded_units,
    fees_lamports = fees_lamports + excluded.fees_lamports,
    verified_escrowed_units = verified_escrowed_units + excluded.verified_escrowed_units,
    verified_charged_units = verified_charged_units + excluded.verified_charged_units,
    verified_worker_paid_units = verified_worker_paid_units + excluded.verified_worker_paid_units,
    verified_treasury_paid_units = verified_treasury_paid_units + excluded.verified_treasury_paid_units,
    verified_refunded_units = verified_refunded_units + excluded.verified_refunded_units,
    disputed_escrowed_units = disputed_escrowed_units + excluded.disputed_escrowed_units,
    disputed_charged_units = disputed_charged_units + excluded.disputed_charged_units,
    disputed_worker_paid_units = disputed_worker_paid_units + excluded.disputed_worker_paid_units,
    disputed_treasury_paid_units = disputed_treasury_paid_units + excluded.disputed_treasury_paid_units,
    disputed_refunded_units = disputed_refunded_units + excluded.disputed_refunded_units;
END;
--> statement-breakpoint
CREATE TRIGGER `jobs_rollup_delete` AFTER DELETE ON `jobs` BEGIN
  INSERT INTO job_rollups (grain, day, model, worker, key_fingerprint,
    jobs_open, jobs_verified, jobs_partially_verified, jobs_discrepancy,
    jobs_dropped, jobs_unverifiable, escrowed_units, charged_units,
    worker_paid_units, treasury_paid_units, refunded_units, fees_lamports,
    verified_escrowed_units, verified_charged_units, verified_worker_paid_units, verified_treasury_paid_units,
    verified_refunded_units, disputed_escrowed_units, disputed_charged_units, disputed_worker_paid_units,
    disputed_treasury_paid_units, disputed_refunded_units)
  SELECT g.grain, old.created_at / 86400000,
    CASE WHEN g.grain IN (0, 1) THEN coalesce(old.model, x'') ELSE x'' END,
    CASE WHEN g.grain IN (0, 2) THEN coalesce(old.worker, x'') ELSE x'' END,
    CASE WHEN g.grain IN (0, 3) THEN coalesce(old.key_fingerprint, x'') ELSE x'' END,
    -(old.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement')),
    -(old.verdict = 'verified'),
    -(old.verdict = 'partially_verified'),
    -(old.verdict = 'discrepancy'),
    -(old.verdict = 'dropped'),
    -(old.verdict = 'unverifiable'),
    -coalesce(old.escrowed_units, 0),
    -coalesce(old.charged_units, 0),
    -coalesce(old.worker_paid_units, 0),
    -coalesce(old.treasury_paid_units, 0),
    -coalesce(old.refunded_units, 0),
    -coalesce(old.fees_lamports, 0),
    -CASE WHEN old.verdict = 'verified' THEN coalesce(old.escrowed_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict = 'verified' THEN coalesce(old.charged_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict = 'verified' THEN coalesce(old.worker_paid_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict = 'verified' THEN coalesce(old.treasury_paid_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict = 'verified' THEN coalesce(old.refunded_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN coalesce(old.escrowed_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN coalesce(old.charged_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN coalesce(old.worker_paid_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN coalesce(old.treasury_paid_units, 0) ELSE 0 END,
    -CASE WHEN old.verdict IN ('discrepancy', 'dropped') THEN coalesce(old.refunded_units, 0) ELSE 0 END
  FROM (SELECT 0 AS grain UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) AS g WHERE true
  ON CONFLICT (grain, day, model, worker, key_fingerprint) DO UPDATE SET
    jobs_open = jobs_open + excluded.jobs_open,
    jobs_verified = jobs_verified + excluded.jobs_verified,
    jobs_partially_verified = jobs_partially_verified + excluded.jobs_partially_verified,
    jobs_discrepancy = jobs_discrepancy + excluded.jobs_discrepancy,
    jobs_dropped = jobs_dropped + excluded.jobs_dropped,
    jobs_unverifiable = jobs_unverifiable + excluded.jobs_unverifiable,
    escrowed_units = escrowed_units + excluded.escrowed_units,
    charged_units = charged_units + excluded.charged_units,
    worker_paid_units = worker_paid_units + excluded.worker_paid_units,
    treasury_paid_units = treasury_paid_units + excluded.treasury_paid_units,
    refunded_units = refunded_units + excluded.refunded_units,
    fees_lamports = fees_lamports + excluded.fees_lamports,
    verified_escrowed_units = verified_escrowed_units + excluded.verified_escrowed_units,
    verified_charged_units = verified_charged_units + excluded.verified_charged_units,
    verified_worker_paid_units = verified_worker_paid_units + excluded.verified_worker_paid_units,
    verified_treasury_paid_units = verified_treasury_paid_units + excluded.verified_treasury_paid_units,
    verified_refunded_units = verified_refunded_units + excluded.verified_refunded_units,
    disputed_escrowed_units = disputed_escrowed_units + excluded.disputed_escrowed_units,
    disputed_charged_units = disputed_charged_units + excluded.disputed_charged_units,
    disputed_worker_paid_units = disputed_worker_paid_units + excluded.disputed_worker_paid_units,
    disputed_treasury_paid_units = disputed_treasury_paid_units + excluded.disputed_treasury_paid_units,
    disputed_refunded_units = disputed_refunded_units + excluded.disputed_refunded_units;
END;
--> statement-breakpoint
-- Days recorded before the triggers existed: summed by the resumable backfill that `db migrate`
-- (and every start) runs after this migration, one day per transaction, instead of one
-- INSERT ... SELECT here that would hold the write lock over ten million rows. The triggers are
-- on from this point, and the backfill replaces each day it sums, so writes in between count once.
INSERT INTO `job_rollups_backfill` (`id`, `next_day`, `last_day`)
  SELECT 1, (SELECT min(`created_at`) FROM `jobs`) / 86400000, (SELECT max(`created_at`) FROM `jobs`) / 86400000
  WHERE EXISTS (SELECT 1 FROM `jobs`);
