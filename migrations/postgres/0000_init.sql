CREATE TABLE "access_tokens" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"role" text NOT NULL,
	"token_hash" text NOT NULL,
	"created_at" bigint NOT NULL,
	"last_used_at" bigint,
	"revoked_at" bigint,
	CONSTRAINT "access_tokens_token_hash_unique" UNIQUE("token_hash")
);
--> statement-breakpoint
CREATE TABLE "chain_transactions" (
	"signature" text PRIMARY KEY NOT NULL,
	"state" text DEFAULT 'unknown' NOT NULL,
	"commitment" text,
	"slot" bigint,
	"block_time" bigint,
	"fee_lamports" bigint,
	"succeeded" boolean,
	"err" json,
	"facts" json,
	"raw" text,
	"first_seen_at" bigint NOT NULL,
	"status_checked_at" bigint,
	"fetched_at" bigint,
	"not_found_since" bigint,
	"not_found_count" bigint DEFAULT 0 NOT NULL,
	"not_found_slot" bigint
);
--> statement-breakpoint
CREATE TABLE "check_results" (
	"job_id" text NOT NULL,
	"name" text NOT NULL,
	"outcome" text NOT NULL,
	"reason" text,
	"expected" json,
	"actual" json,
	"run_id" bigint,
	"checked_at" bigint NOT NULL,
	CONSTRAINT "check_results_job_id_name_pk" PRIMARY KEY("job_id","name")
);
--> statement-breakpoint
CREATE TABLE "credit_vaults" (
	"key_fingerprint" text PRIMARY KEY NOT NULL,
	"vault" text NOT NULL,
	"source" text NOT NULL,
	"job_id" text,
	"pinned_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "dashboard_sessions" (
	"id_hash" text PRIMARY KEY NOT NULL,
	"token_id" text NOT NULL,
	"created_at" bigint NOT NULL,
	"expires_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "job_rollups" (
	"grain" bigint NOT NULL,
	"day" bigint NOT NULL,
	"model" text,
	"worker" text,
	"key_fingerprint" text,
	"jobs_open" bigint DEFAULT 0 NOT NULL,
	"jobs_verified" bigint DEFAULT 0 NOT NULL,
	"jobs_partially_verified" bigint DEFAULT 0 NOT NULL,
	"jobs_discrepancy" bigint DEFAULT 0 NOT NULL,
	"jobs_dropped" bigint DEFAULT 0 NOT NULL,
	"jobs_unverifiable" bigint DEFAULT 0 NOT NULL,
	"escrowed_units" bigint DEFAULT 0 NOT NULL,
	"charged_units" bigint DEFAULT 0 NOT NULL,
	"worker_paid_units" bigint DEFAULT 0 NOT NULL,
	"treasury_paid_units" bigint DEFAULT 0 NOT NULL,
	"refunded_units" bigint DEFAULT 0 NOT NULL,
	"fees_lamports" bigint DEFAULT 0 NOT NULL,
	"verified_escrowed_units" bigint DEFAULT 0 NOT NULL,
	"verified_charged_units" bigint DEFAULT 0 NOT NULL,
	"verified_worker_paid_units" bigint DEFAULT 0 NOT NULL,
	"verified_treasury_paid_units" bigint DEFAULT 0 NOT NULL,
	"verified_refunded_units" bigint DEFAULT 0 NOT NULL,
	"disputed_escrowed_units" bigint DEFAULT 0 NOT NULL,
	"disputed_charged_units" bigint DEFAULT 0 NOT NULL,
	"disputed_worker_paid_units" bigint DEFAULT 0 NOT NULL,
	"disputed_treasury_paid_units" bigint DEFAULT 0 NOT NULL,
	"disputed_refunded_units" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "job_rollups_key" UNIQUE NULLS NOT DISTINCT("grain","day","model","worker","key_fingerprint")
);
--> statement-breakpoint
CREATE TABLE "job_rollups_backfill" (
	"id" bigint PRIMARY KEY NOT NULL,
	"next_day" bigint NOT NULL,
	"last_day" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "jobs" (
	"job_id" text PRIMARY KEY NOT NULL,
	"source" text NOT NULL,
	"escrow_tx" text,
	"settlement_tx" text,
	"worker" text,
	"credits_remaining_units" bigint,
	"model" text,
	"response_model" text,
	"credit_vault" text,
	"prompt_tokens" bigint,
	"completion_tokens" bigint,
	"total_tokens" bigint,
	"max_tokens" bigint,
	"stream" boolean,
	"http_status" bigint,
	"latency_ms" bigint,
	"ttfb_ms" bigint,
	"key_fingerprint" text,
	"tags" json DEFAULT '{}' NOT NULL,
	"capture_state" text DEFAULT 'complete' NOT NULL,
	"receipt_hash" text NOT NULL,
	"created_at" bigint NOT NULL,
	"recorded_at" bigint NOT NULL,
	"updated_at" bigint NOT NULL,
	"api_status" text,
	"api_credits_charged_units" bigint,
	"api_escrow_tx" text,
	"api_settlement_tx" text,
	"api_worker" text,
	"api_response" json,
	"api_checked_at" bigint,
	"backfill_state" text,
	"backfill_attempts" bigint DEFAULT 0 NOT NULL,
	"backfill_next_at" bigint,
	"verdict" text DEFAULT 'pending' NOT NULL,
	"verdict_at" bigint,
	"verify_attempts" bigint DEFAULT 0 NOT NULL,
	"next_verify_at" bigint DEFAULT 0 NOT NULL,
	"lease_owner" text,
	"lease_until" bigint,
	"last_error" text,
	"commitment" text,
	"conflict_signatures" json,
	"unproven" json,
	"escrowed_units" bigint,
	"charged_units" bigint,
	"worker_paid_units" bigint,
	"treasury_paid_units" bigint,
	"refunded_units" bigint,
	"expected_charge_units" bigint,
	"fees_lamports" bigint
);
--> statement-breakpoint
CREATE TABLE "ledger_cursors" (
	"vault" text PRIMARY KEY NOT NULL,
	"newest_signature" text,
	"newest_slot" bigint,
	"sync_top" text,
	"sync_top_slot" bigint,
	"sync_before" text,
	"sync_number" bigint DEFAULT 0 NOT NULL,
	"sync_index" bigint DEFAULT 0 NOT NULL,
	"pages_read" bigint DEFAULT 0 NOT NULL,
	"balance_units" bigint,
	"balance_slot" bigint,
	"balance_at" bigint,
	"synced_at" bigint,
	"last_error" text,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "ledger_lines" (
	"vault" text NOT NULL,
	"signature" text NOT NULL,
	"ord" bigint NOT NULL,
	"slot" bigint NOT NULL,
	"block_time" bigint,
	"state" text DEFAULT 'listed' NOT NULL,
	"succeeded" boolean,
	"pre_units" bigint,
	"post_units" bigint,
	"delta_units" bigint,
	"memo" text,
	"memo_kind" text,
	"memo_job_id" text,
	"listed_at" bigint NOT NULL,
	CONSTRAINT "ledger_lines_vault_signature_pk" PRIMARY KEY("vault","signature")
);
--> statement-breakpoint
CREATE TABLE "locks" (
	"name" text PRIMARY KEY NOT NULL,
	"owner" text NOT NULL,
	"acquired_at" bigint NOT NULL,
	"expires_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "profile_pins" (
	"profile" text NOT NULL,
	"name" text NOT NULL,
	"value" text NOT NULL,
	"evidence" bigint NOT NULL,
	"pinned_at" bigint NOT NULL,
	CONSTRAINT "profile_pins_profile_name_pk" PRIMARY KEY("profile","name")
);
--> statement-breakpoint
CREATE TABLE "receipt_conflicts" (
	"id" bigint PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY (sequence name "receipt_conflicts_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"job_id" text NOT NULL,
	"source" text NOT NULL,
	"receipt" json NOT NULL,
	"differences" json NOT NULL,
	"received_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "treasury_evidence" (
	"profile" text NOT NULL,
	"signature" text NOT NULL,
	"address" text NOT NULL,
	"job_id" text NOT NULL,
	"seen_at" bigint NOT NULL,
	CONSTRAINT "treasury_evidence_profile_signature_pk" PRIMARY KEY("profile","signature")
);
--> statement-breakpoint
CREATE TABLE "verification_runs" (
	"id" bigint PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY (sequence name "verification_runs_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"trigger" text NOT NULL,
	"status" text NOT NULL,
	"window_from" bigint,
	"window_to" bigint,
	"started_at" bigint NOT NULL,
	"finished_at" bigint,
	"owner" text NOT NULL,
	"summary" json
);
--> statement-breakpoint
ALTER TABLE "check_results" ADD CONSTRAINT "check_results_job_id_jobs_job_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("job_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "dashboard_sessions" ADD CONSTRAINT "dashboard_sessions_token_id_access_tokens_id_fk" FOREIGN KEY ("token_id") REFERENCES "public"."access_tokens"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "receipt_conflicts" ADD CONSTRAINT "receipt_conflicts_job_id_jobs_job_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("job_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "chain_transactions_state" ON "chain_transactions" USING btree ("state");--> statement-breakpoint
CREATE INDEX "check_results_failing" ON "check_results" USING btree ("outcome","name");--> statement-breakpoint
CREATE INDEX "dashboard_sessions_expires" ON "dashboard_sessions" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "job_rollups_worker" ON "job_rollups" USING btree ("grain","worker","day");--> statement-breakpoint
CREATE INDEX "jobs_created_at" ON "jobs" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "jobs_verdict_next" ON "jobs" USING btree ("verdict","next_verify_at");--> statement-breakpoint
CREATE INDEX "jobs_escrow_tx" ON "jobs" USING btree ("escrow_tx");--> statement-breakpoint
CREATE INDEX "jobs_settlement_tx" ON "jobs" USING btree ("settlement_tx");--> statement-breakpoint
CREATE INDEX "jobs_api_escrow_tx" ON "jobs" USING btree ("api_escrow_tx");--> statement-breakpoint
CREATE INDEX "jobs_api_settlement_tx" ON "jobs" USING btree ("api_settlement_tx");--> statement-breakpoint
CREATE INDEX "jobs_worker_created" ON "jobs" USING btree ("worker","created_at");--> statement-breakpoint
CREATE INDEX "jobs_model_created" ON "jobs" USING btree ("model","created_at");--> statement-breakpoint
CREATE INDEX "jobs_key_created" ON "jobs" USING btree ("key_fingerprint","created_at");--> statement-breakpoint
CREATE INDEX "jobs_backfill" ON "jobs" USING btree ("backfill_state","backfill_next_at");--> statement-breakpoint
CREATE INDEX "jobs_report_day" ON "jobs" USING btree (("created_at" / 86400000),"verdict","created_at","charged_units","escrowed_units","worker_paid_units","treasury_paid_units","refunded_units","fees_lamports");--> statement-breakpoint
CREATE INDEX "jobs_report_model" ON "jobs" USING btree ("model","verdict","created_at","charged_units","escrowed_units","worker_paid_units","treasury_paid_units","refunded_units","fees_lamports");--> statement-breakpoint
CREATE INDEX "jobs_report_worker" ON "jobs" USING btree ("worker","verdict","created_at","charged_units","escrowed_units","worker_paid_units","treasury_paid_units","refunded_units","fees_lamports");--> statement-breakpoint
CREATE INDEX "jobs_report_key" ON "jobs" USING btree ("key_fingerprint","verdict","created_at","charged_units","escrowed_units","worker_paid_units","treasury_paid_units","refunded_units","fees_lamports");--> statement-breakpoint
CREATE INDEX "jobs_verdict_created" ON "jobs" USING btree ("verdict","created_at");--> statement-breakpoint
CREATE INDEX "ledger_lines_order" ON "ledger_lines" USING btree ("vault","ord");--> statement-breakpoint
CREATE INDEX "ledger_lines_time" ON "ledger_lines" USING btree ("vault","block_time");--> statement-breakpoint
CREATE INDEX "ledger_lines_state" ON "ledger_lines" USING btree ("state","vault");--> statement-breakpoint
CREATE INDEX "ledger_lines_memo_job" ON "ledger_lines" USING btree ("memo_job_id");--> statement-breakpoint
CREATE INDEX "ledger_lines_vault_memo" ON "ledger_lines" USING btree ("vault","memo_kind","delta_units","memo_job_id");--> statement-breakpoint
CREATE INDEX "receipt_conflicts_job" ON "receipt_conflicts" USING btree ("job_id");--> statement-breakpoint
CREATE INDEX "treasury_evidence_address" ON "treasury_evidence" USING btree ("profile","address");--> statement-breakpoint
CREATE INDEX "verification_runs_started" ON "verification_runs" USING btree ("started_at");
--> statement-breakpoint
-- Rollups of `jobs` for reports (the PostgreSQL twin of migrations/0005_rollups.sql): one row
-- trigger function adds each written job's figures to `job_rollups` in the same transaction,
-- OLD's negated (UPDATE, DELETE) and NEW's added (INSERT, UPDATE), at grain 0 (day, model,
-- worker, key) and the marginals 1 (day, model), 2 (day, worker), 3 (day, key). A dimension
-- not recorded or not in the grain is NULL (UNIQUE NULLS NOT DISTINCT, so it still upserts).
-- OLD and NEW are summed per key first, so a job that keeps its key upserts each row once and
-- a job that moves (another day, model, worker or key) takes its figures from one row to the
-- other. Rows are written in key order, so concurrent writers lock them in the same order and
-- never deadlock each other.
CREATE FUNCTION "jobs_rollup"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_rollups AS r (grain, day, model, worker, key_fingerprint,
    jobs_open, jobs_verified, jobs_partially_verified, jobs_discrepancy, jobs_dropped,
    jobs_unverifiable, escrowed_units, charged_units, worker_paid_units, treasury_paid_units,
    refunded_units, fees_lamports, verified_escrowed_units, verified_charged_units,
    verified_worker_paid_units, verified_treasury_paid_units, verified_refunded_units,
    disputed_escrowed_units, disputed_charged_units, disputed_worker_paid_units,
    disputed_treasury_paid_units, disputed_refunded_units)
  SELECT g.grain, c.day,
    CASE WHEN g.grain IN (0, 1) THEN c.model END,
    CASE WHEN g.grain IN (0, 2) THEN c.worker END,
    CASE WHEN g.grain IN (0, 3) THEN c.key_fingerprint END,
    sum(c.sign * (c.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement'))::int),
    sum(c.sign * (c.verdict = 'verified')::int),
    sum(c.sign * (c.verdict = 'partially_verified')::int),
    sum(c.sign * (c.verdict = 'discrepancy')::int),
    sum(c.sign * (c.verdict = 'dropped')::int),
    sum(c.sign * (c.verdict = 'unverifiable')::int),
    sum(c.sign * coalesce(c.escrowed_units, 0)),
    sum(c.sign * coalesce(c.charged_units, 0)),
    sum(c.sign * coalesce(c.worker_paid_units, 0)),
    sum(c.sign * coalesce(c.treasury_paid_units, 0)),
    sum(c.sign * coalesce(c.refunded_units, 0)),
    sum(c.sign * coalesce(c.fees_lamports, 0)),
    sum(c.sign * CASE WHEN c.verdict = 'verified' THEN coalesce(c.escrowed_units, 0) ELSE 0 END),
    sum(c.sign * CASE WHEN c.verdict = 'verified' THEN coalesce(c.charged_units, 0) ELSE 0 END),
    sum(c.sign * CASE WHEN c.verdict = 'verified' THEN coalesce(c.worker_paid_units, 0) ELSE 0 END),
    sum(c.sign * CASE WHEN c.verdict = 'verified' THEN coalesce(c.treasury_paid_units, 0) ELSE 0 END),
    sum(c.sign * CASE WHEN c.verdict = 'verified' THEN coalesce(c.refunded_units, 0) ELSE 0 END),
    sum(c.sign * CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN coalesce(c.escrowed_units, 0) ELSE 0 END),
    sum(c.sign * CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN coalesce(c.charged_units, 0) ELSE 0 END),
    sum(c.sign * CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN coalesce(c.worker_paid_units, 0) ELSE 0 END),
    sum(c.sign * CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN coalesce(c.treasury_paid_units, 0) ELSE 0 END),
    sum(c.sign * CASE WHEN c.verdict IN ('discrepancy', 'dropped') THEN coalesce(c.refunded_units, 0) ELSE 0 END)
  FROM (
    SELECT -1 AS sign, OLD.created_at / 86400000, OLD.model, OLD.worker, OLD.key_fingerprint, OLD.verdict, OLD.escrowed_units, OLD.charged_units, OLD.worker_paid_units, OLD.treasury_paid_units, OLD.refunded_units, OLD.fees_lamports
    WHERE TG_OP <> 'INSERT'
    UNION ALL
    SELECT 1, NEW.created_at / 86400000, NEW.model, NEW.worker, NEW.key_fingerprint, NEW.verdict, NEW.escrowed_units, NEW.charged_units, NEW.worker_paid_units, NEW.treasury_paid_units, NEW.refunded_units, NEW.fees_lamports
    WHERE TG_OP <> 'DELETE'
  ) AS c (sign, day, model, worker, key_fingerprint, verdict, escrowed_units, charged_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports)
  CROSS JOIN (VALUES (0), (1), (2), (3)) AS g (grain)
  GROUP BY 1, 2, 3, 4, 5
  ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (grain, day, model, worker, key_fingerprint) DO UPDATE SET
    jobs_open = r.jobs_open + EXCLUDED.jobs_open,
    jobs_verified = r.jobs_verified + EXCLUDED.jobs_verified,
    jobs_partially_verified = r.jobs_partially_verified + EXCLUDED.jobs_partially_verified,
    jobs_discrepancy = r.jobs_discrepancy + EXCLUDED.jobs_discrepancy,
    jobs_dropped = r.jobs_dropped + EXCLUDED.jobs_dropped,
    jobs_unverifiable = r.jobs_unverifiable + EXCLUDED.jobs_unverifiable,
    escrowed_units = r.escrowed_units + EXCLUDED.escrowed_units,
    charged_units = r.charged_units + EXCLUDED.charged_units,
    worker_paid_units = r.worker_paid_units + EXCLUDED.worker_paid_units,
    treasury_paid_units = r.treasury_paid_units + EXCLUDED.treasury_paid_units,
    refunded_units = r.refunded_units + EXCLUDED.refunded_units,
    fees_lamports = r.fees_lamports + EXCLUDED.fees_lamports,
    verified_escrowed_units = r.verified_escrowed_units + EXCLUDED.verified_escrowed_units,
    verified_charged_units = r.verified_charged_units + EXCLUDED.verified_charged_units,
    verified_worker_paid_units = r.verified_worker_paid_units + EXCLUDED.verified_worker_paid_units,
    verified_treasury_paid_units = r.verified_treasury_paid_units + EXCLUDED.verified_treasury_paid_units,
    verified_refunded_units = r.verified_refunded_units + EXCLUDED.verified_refunded_units,
    disputed_escrowed_units = r.disputed_escrowed_units + EXCLUDED.disputed_escrowed_units,
    disputed_charged_units = r.disputed_charged_units + EXCLUDED.disputed_charged_units,
    disputed_worker_paid_units = r.disputed_worker_paid_units + EXCLUDED.disputed_worker_paid_units,
    disputed_treasury_paid_units = r.disputed_treasury_paid_units + EXCLUDED.disputed_treasury_paid_units,
    disputed_refunded_units = r.disputed_refunded_units + EXCLUDED.disputed_refunded_units;
  RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER "jobs_rollup_insert" AFTER INSERT ON "jobs"
  FOR EACH ROW EXECUTE FUNCTION "jobs_rollup"();
--> statement-breakpoint
-- Only writes that change what the rollups count: moves between the open verdicts (pending,
-- awaiting finality, error, rpc disagreement), lease and attempt updates leave them alone.
CREATE TRIGGER "jobs_rollup_update" AFTER UPDATE OF verdict, created_at, model, worker,
  key_fingerprint, escrowed_units, charged_units, worker_paid_units, treasury_paid_units, refunded_units, fees_lamports ON "jobs"
  FOR EACH ROW WHEN (
    OLD.created_at / 86400000 IS DISTINCT FROM NEW.created_at / 86400000
    OR OLD.model IS DISTINCT FROM NEW.model
    OR OLD.worker IS DISTINCT FROM NEW.worker
    OR OLD.key_fingerprint IS DISTINCT FROM NEW.key_fingerprint
    OR (CASE WHEN OLD.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement') THEN 'open' ELSE OLD.verdict END)
      IS DISTINCT FROM (CASE WHEN NEW.verdict IN ('pending', 'awaiting_finality', 'error', 'rpc_disagreement') THEN 'open' ELSE NEW.verdict END)
    OR OLD.escrowed_units IS DISTINCT FROM NEW.escrowed_units
    OR OLD.charged_units IS DISTINCT FROM NEW.charged_units
    OR OLD.worker_paid_units IS DISTINCT FROM NEW.worker_paid_units
    OR OLD.treasury_paid_units IS DISTINCT FROM NEW.treasury_paid_units
    OR OLD.refunded_units IS DISTINCT FROM NEW.refunded_units
    OR OLD.fees_lamports IS DISTINCT FROM NEW.fees_lamports)
  EXECUTE FUNCTION "jobs_rollup"();
--> statement-breakpoint
CREATE TRIGGER "jobs_rollup_delete" AFTER DELETE ON "jobs"
  FOR EACH ROW EXECUTE FUNCTION "jobs_rollup"();
