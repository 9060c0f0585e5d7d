DROP INDEX "jobs_recorded_created";--> statement-breakpoint
CREATE INDEX "jobs_recorded_late" ON "jobs" USING btree ("recorded_at","created_at") WHERE "jobs"."created_at" < "jobs"."recorded_at";