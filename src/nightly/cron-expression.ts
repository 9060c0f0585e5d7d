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
    parseCron(expression);
  } catch (cause) {
    throw new AppError(
      "validation_failed",
      `VERIFY_CRON: not a cron expression: ${expression}`,
      { field: "VERIFY_CRON" },
      { cause },
    );
  }
}

/** Whether the expression is one VERIFY_CRON takes (see `parseCron`); starts nothing. */
export function isCronExpression(expression: string): boolean {
  try {
    parseCron(expression);
    return true;
  } catch {
    return false;
  }
}

/**
 * Parses a five- or six-field expression (or a nickname such as `@daily`), paused. croner also
 * takes seven fields, the last a year, and reads six as seconds first: `* * * * * * *` ran the
 * nightly verification every second where the error and README say five or six fields.
 */
function parseCron(expression: string): void {
  const fields = expression.trim().split(/\s+/);
  if (!expression.trim().startsWith("@") && (fields.length < 5 || fields.length > 6)) {
    throw new Error(`${fields.length} fields, not five or six`);
  }
  new Cron(expression, { timezone: "UTC", paused: true }).stop();
}
