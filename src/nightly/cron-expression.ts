import { Cron } from "croner";
import { AppError } from "../errors.js";

/**
 * Throws the VERIFY_CRON error for an expression croner cannot parse; starts nothing. Apart
 * from the schedule (cron.ts) so that a process that only checks the flag at start-up (the
 * primary of `serve --workers N`, a worker before its service starts) does not load the
 * nightly run and the verifier behind it.
 */
export function validateCronExpression(expression: string): void {
  try {
    new Cron(expression, { timezone: "UTC", paused: true }).stop();
  } catch (cause) {
    throw new AppError(
      "validation_failed",
      `VERIFY_CRON: not a cron expression: ${expression}`,
      { field: "VERIFY_CRON" },
      { cause },
    );
  }
}
