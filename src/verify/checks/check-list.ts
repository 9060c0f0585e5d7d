import type { CheckOutcome } from "../../db/schema.js";
import type { CheckName, UnprovenCode } from "../check-catalogue.js";
import type { CheckResult } from "./check-input.js";

/** Building blocks of every check: results, and the list a job's checks are collected in. */

export const pass = (name: CheckName, expected: unknown, actual: unknown): CheckResult => ({
  name,
  outcome: "pass",
  reason: null,
  expected,
  actual,
});
export const fail = (
  name: CheckName,
  reason: string,
  expected: unknown,
  actual: unknown,
): CheckResult => ({ name, outcome: "fail", reason, expected, actual });
export const skip = (name: CheckName, reason: string): CheckResult => ({
  name,
  outcome: "skip",
  reason,
  expected: null,
  actual: null,
});

export const sum = (values: Iterable<bigint>) => {
  let total = 0n;
  for (const v of values) total += v;
  return total;
};

/** Collects checks and what they leave unproven. */
export class CheckList {
  readonly checks: CheckResult[] = [];
  readonly unproven = new Set<UnprovenCode>();
  unverifiable: string | null = null;

  add(...checks: CheckResult[]) {
    this.checks.push(...checks);
  }
  /** A skip that leaves a money fact of this job unproven. */
  gap(name: CheckName, code: UnprovenCode, reason: string) {
    this.unproven.add(code);
    this.checks.push(skip(name, reason));
  }
  skipAll(names: readonly CheckName[], reason: string) {
    for (const name of names) this.checks.push(skip(name, reason));
  }
  outcome(name: CheckName): CheckOutcome | undefined {
    return this.checks.find((c) => c.name === name)?.outcome;
  }
  /** A later finding about an earlier check's subject replaces that check's result. */
  replace(check: CheckResult) {
    const i = this.checks.findIndex((c) => c.name === check.name);
    if (i >= 0) this.checks[i] = check;
    else this.checks.push(check);
  }
}
