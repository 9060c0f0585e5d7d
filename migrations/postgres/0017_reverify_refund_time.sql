-- refund.after_escrow and refund.within_window: a refund before its lock paid out of other
-- customers' escrow, and one long after it held the customer's credits, yet both were verified.
-- Every job verified as refunded is looked at again (reopened as `reopenJobs` does), from the
-- transactions already stored: the profile's window is not known here, so none is left out.
-- A refunded job is one answered outside 2xx, one the jobs API calls refunded, or one whose
-- verified closing charged nothing.
UPDATE "jobs" SET "verdict" = 'pending', "next_verify_at" = 0, "verify_attempts" = 0,
  "last_error" = NULL, "lease_owner" = NULL, "lease_until" = NULL,
  "updated_at" = (extract(epoch from clock_timestamp()) * 1000)::bigint
WHERE "verdict" IN ('verified', 'partially_verified')
  AND (("http_status" IS NOT NULL AND ("http_status" < 200 OR "http_status" > 299))
    OR "api_status" = 'refunded'
    OR "charged_units" = 0);
