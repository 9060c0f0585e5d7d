import { UNITS_PER_CREDIT } from "../../money.js";
import { SETTLEMENT_CLOCK_SLACK_SECONDS } from "../../store/ledger-rules.js";
import type { CreditsSpan, ReceiptForChecks } from "./check-input.js";
import { type CheckList, fail, pass, skip } from "./check-list.js";

/**
 * `credits.header`: `x-decentral-credits-remaining` (whole credits) against the balances the
 * job's credit vault held from its lock through its response, as the ledger read them
 * (src/store/ledger.ts; where the response falls among the vault's lines: `headerSpanEnd` in
 * src/store/ledger-rules.ts). Read before the job is decided; nothing here touches the store.
 */

export type { CreditsSpan };

/**
 * A header of h whole credits (h x 10,000 base units) matches a balance b when
 * floor(b / 1 credit) = h, that is h <= b < h + 1 credit: the header is the balance rounded
 * down to whole credits.
 */
export function creditsHeaderMatches(headerUnits: bigint, balanceUnits: bigint): boolean {
  return headerUnits <= balanceUnits && balanceUnits < headerUnits + UNITS_PER_CREDIT;
}

const units = (v: bigint) => v.toString();

/**
 * The check, or a skip that leaves the verdict alone while the ledger has not read the vault
 * past the response. Such a skip names the vault in `expected`: the ledger reopens the job
 * once it has (see `review` in src/store/ledger.ts). A header that matches only a balance the
 * vault held after a line that may have come after the response (`span.ordered`) is a skip
 * leaving the job unproven (`credits_header_order_unknown`): no discrepancy, never verified.
 */
export function creditsHeaderCheck(
  list: CheckList,
  job: Pick<ReceiptForChecks, "creditsRemainingUnits" | "creditsRemainingUnread">,
  span: CreditsSpan | null,
): void {
  const header = job.creditsRemainingUnits ?? null;
  const unread = job.creditsRemainingUnread ?? null;
  if (header === null && unread !== null) {
    // The operator told the customer a balance that is none: no vault holds it, whatever the
    // ledger reads.
    list.add(
      fail(
        "credits.header",
        `the response carried x-decentral-credits-remaining, but it is not a credit amount: ${unread}`,
        { header: "a number of credits" },
        { header: unread },
      ),
    );
    return;
  }
  if (header === null) {
    list.add(skip("credits.header", "the response carried no x-decentral-credits-remaining"));
    return;
  }
  if (span === null) {
    list.add(skip("credits.header", "the credit vault of the job's lock is not known"));
    return;
  }
  const expected = { headerUnits: units(header), vault: span.vault };
  const at = span.balancesUnits.findIndex((b) => creditsHeaderMatches(header, b));
  if (at >= 0 && at < span.ordered) {
    list.add(pass("credits.header", expected, { balanceUnits: units(span.balancesUnits[at]!) }));
    return;
  }
  if (at >= 0 && span.covered) {
    list.gap(
      "credits.header",
      "credits_header_order_unknown",
      `the header says ${header / UNITS_PER_CREDIT} credits: the balance the credit vault held after a line that may have come before the response or after it (dated after the second the response came, or the receipt does not say when it came; at most ${SETTLEMENT_CLOCK_SLACK_SECONDS} s after the receipt was recorded)`,
    );
    return;
  }
  if (!span.covered) {
    list.add({
      ...skip(
        "credits.header",
        "the ledger has not read the credit vault past the job's response yet",
      ),
      expected,
    });
    return;
  }
  list.add(
    fail(
      "credits.header",
      `the header says ${header / UNITS_PER_CREDIT} credits; no balance of the credit vault from the lock through the response rounds down to it`,
      expected,
      { balancesUnits: span.balancesUnits.map(units) },
    ),
  );
}

/**
 * The check would be skipped only because the ledger has not read the credit vault past the
 * response yet: a header the ledger may still find matching no balance (see
 * `creditsHeaderCheck`). A clean verdict waits for that read where a ledger runs beside the
 * verifier (src/verify/escrow-cover.ts).
 */
export function creditsHeaderAwaitsLedger(
  job: Pick<ReceiptForChecks, "creditsRemainingUnits" | "creditsRemainingUnread">,
  span: CreditsSpan | null,
): boolean {
  const header = job.creditsRemainingUnits ?? null;
  if (header === null || (job.creditsRemainingUnread ?? null) !== null) return false;
  if (span === null || span.covered) return false;
  const at = span.balancesUnits.findIndex((b) => creditsHeaderMatches(header, b));
  return !(at >= 0 && at < span.ordered);
}
