-- Stored sums of money as numeric: a rollup row or a ledger day sums flows (a vault locked whole
-- at each job counts its balance each time), and 1,024 amounts of 2^53 - 1 reach 2^63, where a
-- bigint refused the trigger's write of every later job of that row. One ALTER per table, so
-- each is rewritten once; the values convert exactly.
ALTER TABLE "job_rollups"
  ALTER COLUMN "escrowed_units" SET DATA TYPE numeric,
  ALTER COLUMN "charged_units" SET DATA TYPE numeric,
  ALTER COLUMN "worker_paid_units" SET DATA TYPE numeric,
  ALTER COLUMN "treasury_paid_units" SET DATA TYPE numeric,
  ALTER COLUMN "refunded_units" SET DATA TYPE numeric,
  ALTER COLUMN "fees_lamports" SET DATA TYPE numeric,
  ALTER COLUMN "verified_escrowed_units" SET DATA TYPE numeric,
  ALTER COLUMN "verified_charged_units" SET DATA TYPE numeric,
  ALTER COLUMN "verified_worker_paid_units" SET DATA TYPE numeric,
  ALTER COLUMN "verified_treasury_paid_units" SET DATA TYPE numeric,
  ALTER COLUMN "verified_refunded_units" SET DATA TYPE numeric,
  ALTER COLUMN "disputed_escrowed_units" SET DATA TYPE numeric,
  ALTER COLUMN "disputed_charged_units" SET DATA TYPE numeric,
  ALTER COLUMN "disputed_worker_paid_units" SET DATA TYPE numeric,
  ALTER COLUMN "disputed_treasury_paid_units" SET DATA TYPE numeric,
  ALTER COLUMN "disputed_refunded_units" SET DATA TYPE numeric;
--> statement-breakpoint
ALTER TABLE "ledger_daily" ALTER COLUMN "units" SET DATA TYPE numeric;
