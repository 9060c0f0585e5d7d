-- Rows recorded before keep no response time (NULL): `recorded_at` said only when the row was
-- written. A job of theirs judged again has its credits header proven only by the balances
-- after its own lock and settlement; verdicts already reached stay.
ALTER TABLE `jobs` ADD `responded_at` integer;
