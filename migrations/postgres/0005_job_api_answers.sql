CREATE TABLE "job_api_answers" (
	"job_id" text PRIMARY KEY NOT NULL,
	"response" json NOT NULL
);
--> statement-breakpoint
ALTER TABLE "job_api_answers" ADD CONSTRAINT "job_api_answers_job_id_jobs_job_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("job_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
INSERT INTO "job_api_answers" ("job_id", "response")
  SELECT "job_id", "api_response" FROM "jobs"
  WHERE "api_response" IS NOT NULL AND "api_response"::text <> 'null';--> statement-breakpoint
ALTER TABLE "jobs" DROP COLUMN "api_response";