import { claimBackfillUnit, giveUpBackfillUnit, leaveToBackfillUnit } from "./backfill.js";
import { recordJobsApiAnswerUnit } from "./jobs-api.js";
import { recordReceiptAtAttemptUnit, recordReceiptsUnit } from "./receipts.js";
import type { WriteUnit, WriteUnitData } from "./write-unit.js";

/** The write unit `data` describes, built again (in the receipt writer's thread). */
export function unitOfData(data: WriteUnitData): WriteUnit<unknown> {
  switch (data.kind) {
    case "receipts":
      return recordReceiptsUnit(data.receipts, data.source, data.options);
    case "receiptAtAttempt":
      return recordReceiptAtAttemptUnit(data.receipt, data.createdAt, data.backfillDelayMs);
    case "jobsApiAnswer":
      return recordJobsApiAnswerUnit(data.jobId, data.answer, data.at);
    case "leaveToBackfill":
      return leaveToBackfillUnit(data.jobIds, data.at);
    case "claimBackfill":
      return claimBackfillUnit(data.claims, data.giveUps, data.at, data.farAfter);
    case "giveUpBackfill":
      return giveUpBackfillUnit(data.jobId, data.at);
  }
}
