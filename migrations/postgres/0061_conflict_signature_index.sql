CREATE TABLE "job_conflict_signatures" (
	"signature" text NOT NULL,
	"job_id" text NOT NULL,
	CONSTRAINT "job_conflict_signatures_signature_job_id_pk" PRIMARY KEY("signature","job_id")
);
--> statement-breakpoint
ALTER TABLE "job_conflict_signatures" ADD CONSTRAINT "job_conflict_signatures_job_id_jobs_job_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("job_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "job_conflict_signatures_job" ON "job_conflict_signatures" USING btree ("job_id");