-- When the verifier's next job is due was read over every open job at each poll (50,000 waiting
-- for finality: 10 to 25 ms of the event loop a SQLite `serve` proxies on). It reads the first
-- unleased open job by jobs_open_due, and the leased ones (a claim's few hundred) by this index.
-- A receipt has no lease, so recording writes no entry.
CREATE INDEX "jobs_leased" ON "jobs" USING btree ("lease_until") WHERE "jobs"."lease_until" is not null;