-- Under a profile naming no escrow authority, a lock was judged only against the escrow account
-- it went into: a customer's vault and a fresh escrow account both handed to the operator's key
-- before the lock agreed, and the job stayed clean. The verifier now learns the escrow authority
-- from the first lock written (`profile_pins`, name 'escrow_authority') and judges every job as
-- under a profile naming it. Here, per profile (by the name its clean verdicts were judged
-- under), the owner of the account the earliest clean verdict's lock debited is pinned, as the
-- verifier would have, and clean verdicts whose lock debited an account another owns are judged
-- again ('upgrade', as `reopenJobs` does), from the stored transactions. A profile naming its
-- escrow authority passed only locks from accounts it owns: the pin names it, unread, and no
-- verdict is sent back. Verdicts that name no profile are judged again by the profile sweep.
CREATE TEMP TABLE `rejudge_lock_owner` (`job_id` PRIMARY KEY, `profile`, `owner`, `at` INTEGER);
--> statement-breakpoint
INSERT OR IGNORE INTO temp.`rejudge_lock_owner`
  SELECT j.`job_id`, substr(j.`verdict_profile`, 1, instr(j.`verdict_profile`, '@') - 1),
    json_extract(o.`value`, '$.owner'), j.`verdict_at`
  FROM `jobs` AS j
    CROSS JOIN `chain_transactions` AS t ON t.`signature` = j.`escrow_tx`
    CROSS JOIN json_each(CASE WHEN json_valid(t.`facts`) THEN t.`facts` ELSE '{}' END,
      '$.tokenChanges') AS o
  WHERE j.`verdict` IN ('verified', 'partially_verified') AND j.`verdict_profile` LIKE '%@%'
    AND json_extract(o.`value`, '$.delta') LIKE '-%'
    AND json_extract(o.`value`, '$.owner') IS NOT NULL;
--> statement-breakpoint
INSERT OR IGNORE INTO `profile_pins` (`profile`, `name`, `value`, `evidence`, `pinned_at`)
  SELECT r.`profile`, 'escrow_authority', r.`owner`, 1,
    CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
  FROM (
    -- The earliest lock of each profile: SQLite takes the bare columns from the row of min().
    SELECT `profile`, `owner`, min(`at`) FROM temp.`rejudge_lock_owner` GROUP BY `profile`
  ) AS r;
--> statement-breakpoint
UPDATE `jobs` SET `previous_verdict` = `verdict`, `rejudge_reason` = 'upgrade',
  `verdict` = 'pending', `next_verify_at` = 0, `verify_attempts` = 0,
  `last_error` = NULL, `lease_owner` = NULL, `lease_until` = NULL,
  `updated_at` = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
WHERE `verdict` IN ('verified', 'partially_verified') AND `job_id` IN (
  SELECT r.`job_id` FROM temp.`rejudge_lock_owner` AS r
    JOIN `profile_pins` AS p ON p.`profile` = r.`profile` AND p.`name` = 'escrow_authority'
  WHERE r.`owner` <> p.`value`
);
--> statement-breakpoint
DROP TABLE temp.`rejudge_lock_owner`;
