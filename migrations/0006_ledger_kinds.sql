-- The ledger's statement without a scan of its lines (issue 10): each line's kind and job are
-- decided when it is read (src/store/ledger.ts), and `ledger_daily` sums lines per vault, UTC
-- day and kind, kept by triggers in the same transaction as every write of a line. Lines read
-- before this migration have no kind: the next ledger round classifies them (their sums are
-- added by the same triggers as they are).
-- WITHOUT ROWID: the upserts and the statement's day-range sums read the primary key B-tree only.
--
-- PostgreSQL mirror: the same table with PRIMARY KEY (vault, day, kind) and one row trigger
-- function AFTER INSERT OR UPDATE OF kind, delta_units, block_time OR DELETE ON ledger_lines
-- that subtracts OLD's contribution and adds NEW's with INSERT ... ON CONFLICT DO UPDATE.
CREATE TABLE `ledger_daily` (
	`vault` text NOT NULL,
	`day` integer NOT NULL,
	`kind` text NOT NULL,
	`lines` integer NOT NULL,
	`units` integer NOT NULL,
	PRIMARY KEY(`vault`, `day`, `kind`)
) WITHOUT ROWID;
--> statement-breakpoint
DROP INDEX `ledger_lines_time`;--> statement-breakpoint
ALTER TABLE `ledger_lines` ADD `kind` text;--> statement-breakpoint
ALTER TABLE `ledger_lines` ADD `job_id` text;--> statement-breakpoint
ALTER TABLE `ledger_lines` ADD `released` integer DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE `ledger_lines` ADD `header_ok` integer;--> statement-breakpoint
ALTER TABLE `ledger_lines` ADD `gap_after_signature` text;--> statement-breakpoint
ALTER TABLE `ledger_lines` ADD `gap_after_slot` integer;--> statement-breakpoint
ALTER TABLE `ledger_lines` ADD `gap_units` integer;--> statement-breakpoint
CREATE INDEX `ledger_lines_vault_job` ON `ledger_lines` (`vault`,`job_id`);--> statement-breakpoint
CREATE INDEX `ledger_lines_review` ON `ledger_lines` (`vault`,`kind`,`block_time`) WHERE "ledger_lines"."kind" IN ('unexplained', 'deposit');--> statement-breakpoint
CREATE INDEX `ledger_lines_open_locks` ON `ledger_lines` (`vault`,`block_time`) WHERE "ledger_lines"."kind" = 'lock' AND "ledger_lines"."released" = 0;--> statement-breakpoint
CREATE INDEX `ledger_lines_header_open` ON `ledger_lines` (`vault`,`block_time`) WHERE "ledger_lines"."kind" = 'lock' AND ("ledger_lines"."header_ok" IS NULL OR "ledger_lines"."header_ok" = 0);--> statement-breakpoint
CREATE INDEX `ledger_lines_gaps` ON `ledger_lines` (`vault`,`block_time`) WHERE "ledger_lines"."gap_units" IS NOT NULL;--> statement-breakpoint
CREATE INDEX `ledger_lines_unclassified` ON `ledger_lines` (`vault`,`ord`) WHERE "ledger_lines"."state" = 'read' AND "ledger_lines"."kind" IS NULL;--> statement-breakpoint
CREATE INDEX `ledger_lines_time` ON `ledger_lines` (`vault`,`block_time`,`ord`);--> statement-breakpoint
ALTER TABLE `ledger_cursors` ADD `chained_ord` integer;
--> statement-breakpoint
CREATE TRIGGER `ledger_lines_daily_insert` AFTER INSERT ON `ledger_lines`
WHEN new.kind IS NOT NULL AND new.block_time IS NOT NULL BEGIN
  INSERT INTO ledger_daily (vault, day, kind, lines, units)
  SELECT new.vault, new.block_time / 86400, new.kind, 1, coalesce(new.delta_units, 0) WHERE true
  ON CONFLICT (vault, day, kind) DO UPDATE SET lines = lines + excluded.lines, units = units + excluded.units;
END;
--> statement-breakpoint
CREATE TRIGGER `ledger_lines_daily_update` AFTER UPDATE OF kind, delta_units, block_time ON `ledger_lines`
WHEN old.kind IS NOT new.kind OR old.delta_units IS NOT new.delta_units OR old.block_time IS NOT new.block_time BEGIN
  INSERT INTO ledger_daily (vault, day, kind, lines, units)
  SELECT old.vault, old.block_time / 86400, old.kind, -1, -coalesce(old.delta_units, 0)
  WHERE old.kind IS NOT NULL AND old.block_time IS NOT NULL
  ON CONFLICT (vault, day, kind) DO UPDATE SET lines = lines + excluded.lines, units = units + excluded.units;
  INSERT INTO ledger_daily (vault, day, kind, lines, units)
  SELECT new.vault, new.block_time / 86400, new.kind, 1, coalesce(new.delta_units, 0)
  WHERE new.kind IS NOT NULL AND new.block_time IS NOT NULL
  ON CONFLICT (vault, day, kind) DO UPDATE SET lines = lines + excluded.lines, units = units + excluded.units;
END;
--> statement-breakpoint
CREATE TRIGGER `ledger_lines_daily_delete` AFTER DELETE ON `ledger_lines`
WHEN old.kind IS NOT NULL AND old.block_time IS NOT NULL BEGIN
  INSERT INTO ledger_daily (vault, day, kind, lines, units)
  SELECT old.vault, old.block_time / 86400, old.kind, -1, -coalesce(old.delta_units, 0) WHERE true
  ON CONFLICT (vault, day, kind) DO UPDATE SET lines = lines + excluded.lines, units = units + excluded.units;
END;
