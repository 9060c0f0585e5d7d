-- A lock is marked released (`ledger_lines.released`) once its job's paid-out covers it, and the
-- open-lock review and the statement's unreleased locks read only the locks not released. A job
-- judged again may pay out less than when its lock was released (the payout that covered it is
-- another job's now: a settlement the receipt named that a job earlier by id, or the one its memo
-- names, owns): its lock stayed released, one payout releasing two locks, and no statement named
-- the lock never paid out. When a job's paid-out drops, its released locks are reviewed again
-- (released again by the next review if still covered). Rare (a verdict taking money away), so
-- the lines are found through each read vault's (vault, job_id) index.
CREATE TRIGGER `jobs_locks_unreleased` AFTER UPDATE OF escrow_paid_units, charged_units ON `jobs`
WHEN coalesce(NEW.escrow_paid_units, NEW.charged_units, 0)
  < coalesce(OLD.escrow_paid_units, OLD.charged_units, 0)
BEGIN
  UPDATE ledger_lines SET released = 0
  WHERE vault IN (SELECT vault FROM ledger_cursors) AND job_id = NEW.job_id
    AND kind = 'lock' AND released = 1;
END;
