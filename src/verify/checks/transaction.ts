import type { TransactionFacts } from "../../chain/transaction-facts.js";
import type { Role } from "../check-catalogue.js";
import {
  balancesUnshown,
  forbiddenTokenInstructions,
  innerInstructionsHidden,
} from "../money-movements.js";
import type { CheckInput } from "./check-input.js";
import { type CheckList, fail, pass, skip } from "./check-list.js";
import { memoKindOf, memoPrefix, parseJobMemos } from "./memos.js";

/**
 * The checks every transaction a job names passes whatever its role: program, exists,
 * finalized, succeeded, memo, instructions.
 */

/** A transaction a job names, in the role it plays for it. */
export interface RoleTx {
  role: Role;
  signature: string;
  facts: TransactionFacts;
  /**
   * Another job owns it, or this job names it for two steps: `signatures.unique` reports that,
   * and the transaction's own checks defer to it.
   */
  stolenBy: string | null;
}

/**
 * The checks every role shares. Returns true when the transaction can be read for money: it
 * succeeded, names this job alone, belongs to it, and carries only transfers.
 */
export function roleChecks(input: CheckInput, tx: RoleTx, list: CheckList): boolean {
  const { job, profile } = input;
  const { role, signature, facts } = tx;
  const programId =
    role === "settlement" ? profile.programs.settlement : profile.programs.jobEscrow;
  const programName = role === "settlement" ? "settlement" : "job_escrow";
  list.add(
    programId === null
      ? skip(`${role}.program`, `the profile does not know the ${programName} program id`)
      : facts.programs.includes(programId)
        ? pass(`${role}.program`, programId, facts.programs)
        : fail(
            `${role}.program`,
            `the ${programName} program was not invoked`,
            programId,
            facts.programs,
          ),
    pass(`${role}.exists`, { signature }, { signature, slot: facts.slot }),
    pass(`${role}.finalized`, "finalized", "finalized"),
  );
  if (facts.succeeded) list.add(pass(`${role}.succeeded`, { err: null }, { err: null }));
  else
    list.add(
      fail(
        `${role}.succeeded`,
        "the transaction failed on chain: it paid its fee and moved no tokens",
        { err: null },
        { err: facts.err },
      ),
    );
  const later = [`${role}.memo`, `${role}.instructions`] as const;
  if (tx.stolenBy !== null) {
    list.skipAll(later, `${tx.stolenBy} (see signatures.unique)`);
    return false;
  }
  const wanted = `${memoPrefix(profile, role)}${job.jobId}`;
  const named = parseJobMemos(profile, facts.memos);
  const others = named.filter((m) => m.jobId !== job.jobId || m.kind !== memoKindOf[role]);
  const memoOk = facts.memos.some((m) => m.trim() === wanted) && others.length === 0;
  list.add(
    memoOk
      ? pass(`${role}.memo`, wanted, facts.memos)
      : fail(
          `${role}.memo`,
          others.length > 0
            ? `its memos also name ${others.map((m) => `${m.kind}:${m.jobId}`).join(", ")}: one transaction serves one job in one step`
            : `no memo names ${job.jobId}`,
          wanted,
          facts.memos,
        ),
  );
  const forbidden = forbiddenTokenInstructions(facts);
  if (forbidden.length > 0) {
    list.add(
      fail(
        `${role}.instructions`,
        `the transaction also ran ${[...new Set(forbidden.map((f) => f.kind))].join(", ")}`,
        { allowed: ["transfer", "transferChecked"] },
        forbidden,
      ),
    );
  } else if (innerInstructionsHidden(profile, facts)) {
    list.gap(
      `${role}.instructions`,
      "inner_instructions_unknown",
      "the node reported no inner instructions, and other programs were invoked",
    );
  } else if (balancesUnshown(profile, facts)) {
    // The node served the inner instructions, but not all: token balances moved by none of
    // them, and what else ran beside that money (an Approve of the vault) is unseen.
    list.gap(
      `${role}.instructions`,
      "inner_instructions_unknown",
      "token balances moved by no instruction the node served: its inner instructions are incomplete",
    );
  } else {
    list.add(
      pass(
        `${role}.instructions`,
        { allowed: ["transfer", "transferChecked"] },
        facts.tokenInstructions.map((ix) => ix.kind),
      ),
    );
  }
  return facts.succeeded && memoOk && forbidden.length === 0;
}
