-- Which nightly window counts a job recorded after its date (src/db/schema.ts nightlyCountings):
-- such a job, dated in one window and recorded in the next before its run, was counted by both.
ALTER TABLE "jobs" ADD COLUMN "nightly_counted" text;
