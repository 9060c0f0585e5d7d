import { createHash } from "node:crypto";
import { canonicalJson } from "../canonical-json.js";
import type { Config } from "../config.js";
import { AppError, isAppError } from "../errors.js";
import type { Logger } from "../log.js";
import { factsToJson, type TransactionFactsJson } from "./facts-json.js";
import {
  type AddressSignatureInfo,
  type EndpointSlots,
  endpointFromConfig,
  type FetchedTransaction,
  type FoundAnywhere,
  type RpcPool,
  rpcPoolFromConfig,
  type SignatureStatusInfo,
  type TokenAccountRead,
} from "./rpc-pool.js";
import { signedByPayer } from "./signed-message.js";
import type { TransactionFacts } from "./transaction-facts.js";
import { endpointNames } from "./url-secrets.js";

/**
 * A quorum over independent RPC endpoints (`RPC_QUORUM=k`). A fact the verifier uses (a
 * transaction's parsed facts, a finalized status, a "not found") is taken only when k endpoints
 * answered it identically; answers are compared by a digest of the parsed facts, never by their
 * JSON text, which legitimately differs between providers. Invariants:
 * - an answer that did not reach k is never returned as if it had: the caller gets either the
 *   agreed answer, a weaker one that proves nothing (a status capped below finalized), an
 *   `RpcDisagreementError` naming every answer, or `rpc_unavailable`;
 * - statuses that are not final come from one endpoint (rotating), only final answers (finalized
 *   or not found) are cross-checked, so a poll costs one batch call plus one per extra endpoint
 *   asked; a transaction costs one getTransaction per endpoint asked (k when all agree);
 * - a vault's history (getSignaturesForAddress) is the union of what k endpoints list, so no
 *   endpoint can leave a transaction out on its own, and a token account (getTokenAccount:
 *   program, mint and balance) is returned only when k endpoints report the same one;
 * - an endpoint outvoted `setAsideAfter` times in a row is set aside: asked last, only when the
 *   others cannot make the quorum. Agreement with it still counts: identical facts from a liar
 *   and an honest node are the honest facts;
 * - an endpoint slow to answer has the next one asked too (`hedged`), and is asked last until it
 *   answers in time: with more endpoints than k, it costs one hedge delay, not a timeout a read.
 *   The current slot still asks it at once and waits for it up to the hedge delay (`fromK`).
 */

/** One endpoint's answer to one question, as kept in evidence. */
export interface EndpointAnswer {
  endpoint: string;
  /** `facts` (or a status), `not_found`, or `error` (the endpoint could not answer). */
  kind: "answer" | "not_found" | "error";
  /** sha256 of the canonical form of what it answered; null for an error. */
  digest: string | null;
  /** The parsed facts (getTransaction) or the status (getSignatureStatuses) it answered. */
  value?: TransactionFactsJson | QuorumStatusJson | null;
  error?: string;
  /** The endpoint answered, but with a transaction that does not parse. */
  malformed?: boolean;
}

/** A signature status in the form compared and kept as evidence. */
export interface QuorumStatusJson {
  slot: number;
  confirmationStatus: SignatureStatusInfo["confirmationStatus"];
  err: unknown;
}

/** What disagreeing endpoints said about one signature: evidence of an `rpc_disagreement`. */
export interface RpcDisagreement {
  signature: string;
  method: "getTransaction" | "getSignatureStatuses";
  quorum: number;
  answers: EndpointAnswer[];
}

/** Thrown (getTransaction) or attached to a status when endpoints disagree and no k agree. */
export class RpcDisagreementError extends AppError {
  constructor(readonly disagreement: RpcDisagreement) {
    super("rpc_disagreement", describeDisagreement(disagreement), {
      signature: disagreement.signature,
      endpoints: disagreement.answers.map((a) => a.endpoint),
    });
    this.name = "RpcDisagreementError";
  }
}

/** A status the quorum could not agree on; `confirmationStatus` is capped so nothing is final. */
export interface DisputedStatus extends SignatureStatusInfo {
  disagreement: RpcDisagreement;
}

/** One line naming which endpoints answered what. */
export function describeDisagreement(d: RpcDisagreement): string {
  const groups = new Map<string, string[]>();
  for (const a of d.answers) {
    const key = a.kind === "error" ? "error" : a.kind === "not_found" ? "not found" : a.digest!;
    groups.set(key, [...(groups.get(key) ?? []), a.endpoint]);
  }
  const parts = [...groups].map(([key, eps]) => {
    const what = key === "error" || key === "not found" ? key : `digest ${key.slice(0, 12)}`;
    return `${eps.join(", ")}: ${what}`;
  });
  return `${d.method} ${d.signature}: no ${d.quorum} endpoints agree (${parts.join("; ")})`;
}

/** Per-endpoint quorum standing, for `/readyz` and `/metrics`. */
export interface QuorumEndpointStatus {
  endpoint: string;
  /** Times its answer differed from the one k endpoints agreed on. */
  outvoted: number;
  /** Times it was one side of a disagreement no quorum settled. */
  unresolved: number;
  /** Outvoted in a row, reset by agreement. */
  consecutiveOutvoted: number;
  setAside: boolean;
  setAsideUntil: number | null;
}

export interface QuorumStatus {
  quorum: number;
  endpoints: QuorumEndpointStatus[];
}

/** One endpoint of the quorum: its display name and a pool over that endpoint alone. */
export interface QuorumMember {
  name: string;
  rpc: RpcPool;
}

export interface QuorumOptions {
  members: QuorumMember[];
  /** Endpoints that must answer a fact identically, 2..members. */
  quorum: number;
  /** Times in a row an endpoint may be outvoted before it is set aside. Default 3. */
  setAsideAfter?: number;
  /** How long an endpoint is set aside, in ms. Default 600000 (10 min). */
  setAsideMs?: number;
  log?: Logger;
  now?: () => number;
}

/** The RPC pool interface plus the quorum's own standing. */
export interface QuorumRpc extends RpcPool {
  /** Every null status is k endpoints' agreed "not found" (see `VerifierRpc.agreedMisses`). */
  readonly agreedMisses: true;
  quorumStatus(): QuorumStatus;
  /**
   * Asks each endpoint its finalized slot once (`/readyz`): each endpoint's error, null where
   * it answered. An endpoint down while k others answer leaves the quorum working, unseen
   * otherwise: it is neither outvoted nor set aside, it fails every call.
   */
  probeEach(signal?: AbortSignal): Promise<{ endpoint: string; error: string | null }[]>;
  /**
   * Endpoints that answered getTransaction "not found" for a transaction another endpoint
   * served, with no k agreeing either way, and how often: retried as RPC trouble (a node a
   * little behind does it), but an endpoint that keeps doing it leaves transactions out.
   */
  leftOut(): { endpoint: string; times: number }[];
  /** Every endpoint's answer to getTransaction, and whether k of them agree (`tx inspect`). */
  inspect(
    signature: string,
    commitment?: "confirmed" | "finalized",
  ): Promise<{ quorum: number; agreed: boolean; digest: string | null; answers: EndpointAnswer[] }>;
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** Digest of a transaction's parsed facts (their canonical JSON form). */
export function factsDigest(facts: TransactionFacts): string {
  return sha256(canonicalJson(factsToJson(facts)));
}

/** Digest of what a final status asserts: finalized, at which slot, with which error. */
function statusDigest(status: SignatureStatusInfo): string {
  return sha256(canonicalJson({ slot: status.slot, err: status.err ?? null, final: true }));
}

/** Failed calls in a row after which an endpoint is asked after those that answer. */
const FAILING_AFTER = 2;

/**
 * Bounds of the hedge delay: how long a question waits on an endpoint before the next one is
 * asked too. Well below an RPC timeout (15 s by default), above a healthy answer's time.
 */
const HEDGE_MIN_MS = 250;
const HEDGE_MAX_MS = 2000;
/** The hedge delay before any answer to the method was timed (a fresh process). */
const HEDGE_FIRST_MS = 1000;
/** Answer times kept per method for the hedge delay. */
const HEDGE_TIMES_KEPT = 32;

/** How one endpoint's call of a hedged question ended. */
type Outcome<R> = { ok: true; value: R } | { ok: false; error: unknown };

/** A signal that fires when either does (the caller's, and the quorum's own stop). */
function eitherSignal(a: AbortSignal | undefined, b: AbortSignal): AbortSignal {
  return a ? AbortSignal.any([a, b]) : b;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

interface Standing {
  /** Calls in a row that failed (down, timing out): such an endpoint is asked after the others. */
  failing: number;
  /**
   * It did not answer a question within the hedge delay (the next endpoint was asked in its
   * place): asked after those that answer in time, until it answers in time again.
   */
  lagging: boolean;
  outvoted: number;
  unresolved: number;
  consecutive: number;
  setAsideUntil: number;
}

/**
 * Endpoints' listings with each signature's slot and block time checked against the others':
 * the ledger files a line under the block time its listing gives until the transaction is read,
 * so one endpoint must not be able to move a debit out of the period. A different slot or block
 * time is a disagreement (the vault's read waits for it). A block time one endpoint leaves out
 * rests on fewer endpoints than listed the entry: it is left out (an unknown time counts for
 * every period until the transaction, read under the quorum, gives it).
 */
function sameListedFacts(
  address: string,
  answers: { member: QuorumMember; value: AddressSignatureInfo[] }[],
): AddressSignatureInfo[][] {
  const first = new Map<
    string,
    { endpoint: string; slot: number; blockTime: number | null; blank: boolean }
  >();
  for (const { member, value } of answers) {
    for (const e of value) {
      const seen = first.get(e.signature);
      if (!seen) {
        first.set(e.signature, {
          endpoint: member.name,
          slot: e.slot,
          blockTime: e.blockTime,
          blank: e.blockTime === null,
        });
        continue;
      }
      if (
        seen.slot !== e.slot ||
        (seen.blockTime !== null && e.blockTime !== null && seen.blockTime !== e.blockTime)
      ) {
        throw new AppError(
          "rpc_disagreement",
          `getSignaturesForAddress ${address}: ${e.signature} is listed at slot ${seen.slot}, ` +
            `block time ${seen.blockTime} by ${seen.endpoint} and at slot ${e.slot}, ` +
            `block time ${e.blockTime} by ${member.name}`,
          { signature: e.signature, endpoints: [seen.endpoint, member.name] },
        );
      }
      if (e.blockTime === null) seen.blank = true;
      else if (seen.blockTime === null) {
        seen.blockTime = e.blockTime;
        seen.endpoint = member.name;
      }
    }
  }
  return answers.map(({ value }) =>
    value.map((e) => {
      const listed = first.get(e.signature)!;
      const blockTime = listed.blank ? null : listed.blockTime;
      return blockTime === e.blockTime ? e : { ...e, blockTime };
    }),
  );
}

/** The first signature two listings place at a different slot or block time, else null. */
function listingConflict(answers: { value: AddressSignatureInfo[] }[]): string | null {
  const first = new Map<string, AddressSignatureInfo>();
  for (const { value } of answers) {
    for (const e of value) {
      const seen = first.get(e.signature);
      if (!seen) first.set(e.signature, e);
      else if (
        seen.slot !== e.slot ||
        (seen.blockTime !== null && e.blockTime !== null && seen.blockTime !== e.blockTime)
      ) {
        return e.signature;
      } else if (seen.blockTime === null && e.blockTime !== null) first.set(e.signature, e);
    }
  }
  return null;
}

/**
 * The union of several listings of one address (newest first), each signature once. An entry
 * one listing lacks goes in after the entry its own listing puts before it, so entries of one
 * slot keep the order the endpoints agree on; then entries are ordered by slot, newest first.
 */
export function unionOfListings(lists: AddressSignatureInfo[][]): AddressSignatureInfo[] {
  const merged: AddressSignatureInfo[] = [];
  const seen = new Set<string>();
  // Every memo text any endpoint gave an entry: one endpoint blanking a memo (or giving another)
  // must not hide the job it names from the escrow scan, which fetches the transaction to judge.
  // An entry whose endpoints gave different memos (one none) is marked: one endpoint adding a
  // memo naming some job to an entry that has none must not make the escrow scan take the entry
  // as named, and leave unread the memo a program's call wrote in it (`readUnnamed`).
  const memos = new Map<string, Set<string | null>>();
  for (const list of lists) {
    for (const entry of list) {
      const texts = memos.get(entry.signature) ?? new Set<string | null>();
      texts.add(entry.memo);
      memos.set(entry.signature, texts);
    }
  }
  const withMemos = (entry: AddressSignatureInfo): AddressSignatureInfo => {
    const texts = memos.get(entry.signature);
    if (texts === undefined || texts.size === 1) return entry;
    const given = [...texts].filter((t) => t !== null);
    return { ...entry, memo: given.join("; "), memoDisputed: true };
  };
  for (const list of [...lists].sort((a, b) => b.length - a.length)) {
    let previous: string | null = null;
    for (const raw of list) {
      const entry = withMemos(raw);
      if (!seen.has(entry.signature)) {
        seen.add(entry.signature);
        if (previous !== null && merged.at(-1)?.signature === previous) merged.push(entry);
        else {
          const at = previous === null ? -1 : merged.findIndex((e) => e.signature === previous);
          merged.splice(at + 1, 0, entry);
        }
      }
      previous = entry.signature;
    }
  }
  // A stable sort: entries of one slot stay as merged.
  return merged.sort((a, b) => b.slot - a.slot);
}

/** Creates a quorum over one pool per endpoint; `close()` closes them all. */
export function createQuorumRpc(options: QuorumOptions): QuorumRpc {
  const { members, quorum: k } = options;
  if (!Number.isInteger(k) || k < 2 || k > members.length) {
    throw new RangeError(`a quorum of ${k} needs at least ${k} endpoints (have ${members.length})`);
  }
  const setAsideAfter = options.setAsideAfter ?? 3;
  const setAsideMs = options.setAsideMs ?? 600_000;
  const now = options.now ?? Date.now;
  const standing = new Map<string, Standing>(
    members.map((m) => [
      m.name,
      {
        failing: 0,
        lagging: false,
        outvoted: 0,
        unresolved: 0,
        consecutive: 0,
        setAsideUntil: 0,
      },
    ]),
  );
  let rotation = 0;
  const leftOutTimes = new Map<string, number>();

  const isAside = (m: QuorumMember) => standing.get(m.name)!.setAsideUntil > now();

  const isFailing = (m: QuorumMember) => standing.get(m.name)!.failing >= FAILING_AFTER;

  const isLagging = (m: QuorumMember) => standing.get(m.name)!.lagging;

  /** Neither set aside, nor failing, nor slow: asked first. */
  const inGoodStanding = (m: QuorumMember) => !isAside(m) && !isFailing(m) && !isLagging(m);

  /**
   * Endpoints in asking order: those in good standing (configured order), then those that were
   * slow to answer, then those whose last calls failed (a down endpoint costs the others no
   * wait), then those set aside.
   */
  const order = (): QuorumMember[] => [
    ...members.filter(inGoodStanding),
    ...members.filter((m) => !isAside(m) && !isFailing(m) && isLagging(m)),
    ...members.filter((m) => !isAside(m) && isFailing(m)),
    ...members.filter((m) => isAside(m)),
  ];

  /**
   * Runs one call on a member, keeping count of its failures in a row. A call stopped by its
   * `signal` (the question was settled without it, or its caller gave up) is no failure of the
   * endpoint.
   */
  async function observed<T>(
    member: QuorumMember,
    call: () => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    const s = standing.get(member.name)!;
    try {
      const value = await call();
      s.failing = 0;
      return value;
    } catch (error) {
      if (!signal?.aborted) s.failing++;
      throw error;
    }
  }

  /** How long the last answers to each method took (ms), newest last. */
  const answerTimes = new Map<string, number[]>();

  /**
   * A few times the usual answer time of `method` (the median of the last ones, so one slow
   * endpoint does not stretch it), bounded.
   */
  const hedgeDelay = (method: string): number => {
    const times = answerTimes.get(method);
    if (!times || times.length === 0) return HEDGE_FIRST_MS;
    const median = [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
    return Math.min(HEDGE_MAX_MS, Math.max(HEDGE_MIN_MS, 4 * median));
  };

  const timed = (method: string, ms: number) => {
    const times = answerTimes.get(method) ?? [];
    times.push(ms);
    if (times.length > HEDGE_TIMES_KEPT) times.shift();
    answerTimes.set(method, times);
  };

  /**
   * Asks the endpoints of `queue` in order, `first` of them at once, until `enough` says the
   * question is settled (it is told how many calls in flight are still within the hedge delay).
   * `take` records each call's outcome, and says whether it failed. The next endpoint is asked
   * when one fails, when no call is left in flight, and when one has not answered within the
   * hedge delay: that endpoint is then lagging, asked after those that answer in time until it
   * answers in time again. One slow endpoint of a quorum asked first held every question for a
   * full RPC timeout (and its retries) before the next endpoint was asked, in every fresh
   * process, while the others could have answered at once. Calls still in flight once the
   * question is settled are stopped (their signal), and what they answer is not taken.
   */
  function hedged<R>(
    method: string,
    queue: QuorumMember[],
    first: number,
    ask: (m: QuorumMember, stop: AbortSignal) => Promise<R>,
    take: (m: QuorumMember, outcome: Outcome<R>) => boolean,
    enough: (waiting: number) => boolean,
  ): Promise<void> {
    const delay = hedgeDelay(method);
    const flying = new Map<
      QuorumMember,
      { started: number; late: boolean; stop: AbortController }
    >();
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      let over = false;
      const waiting = () => [...flying.values()].filter((f) => !f.late).length;
      const finish = () => {
        over = true;
        clearTimeout(timer);
        for (const f of flying.values()) f.stop.abort();
        resolve();
      };
      const arm = () => {
        clearTimeout(timer);
        const fresh = [...flying.values()].filter((f) => !f.late);
        if (fresh.length === 0) return;
        const due = Math.min(...fresh.map((f) => f.started)) + delay - performance.now();
        timer = setTimeout(onLate, Math.max(0, due));
      };
      const launch = () => {
        const m = queue.shift();
        if (!m) return;
        const f = { started: performance.now(), late: false, stop: new AbortController() };
        flying.set(m, f);
        ask(m, f.stop.signal).then(
          (value) => landed(m, { ok: true, value }),
          (error: unknown) => landed(m, { ok: false, error }),
        );
      };
      const landed = (m: QuorumMember, outcome: Outcome<R>) => {
        const f = flying.get(m)!;
        flying.delete(m);
        if (over) return;
        const took = performance.now() - f.started;
        if (outcome.ok) timed(method, took);
        if (outcome.ok && took <= delay) standing.get(m.name)!.lagging = false;
        const failed = take(m, outcome);
        if (enough(waiting())) return finish();
        // A late call had the next endpoint asked in its place already.
        if ((failed && !f.late) || flying.size === 0) launch();
        if (flying.size === 0) return finish();
        arm();
      };
      const onLate = () => {
        const t = performance.now();
        const late = [...flying].filter(([, f]) => !f.late && t - f.started >= delay);
        for (const [, f] of late) f.late = true;
        const settled = enough(waiting());
        // With no other endpoint to ask (as many endpoints as the quorum), a slow one is
        // waited for like any other, and is not slow for the quorum's order.
        if (!settled && queue.length === 0) return arm();
        for (const [m] of late) {
          const s = standing.get(m.name)!;
          if (!s.lagging) {
            s.lagging = true;
            options.log?.warn(
              { endpoint: m.name, method, hedgeMs: Math.round(delay) },
              "rpc endpoint slow to answer: the next endpoint is asked, and it is asked last",
            );
          }
        }
        if (settled) return finish();
        for (const _ of late) launch();
        arm();
      };
      for (let i = 0; i < first; i++) launch();
      if (flying.size === 0) return finish();
      arm();
    });
  }

  const agreed = (name: string) => {
    standing.get(name)!.consecutive = 0;
  };
  const outvoted = (name: string, method: string, signature: string) => {
    const s = standing.get(name)!;
    s.outvoted++;
    s.consecutive++;
    options.log?.warn({ endpoint: name, method, signature }, "rpc endpoint outvoted by the quorum");
    if (s.consecutive >= setAsideAfter && s.setAsideUntil <= now()) {
      s.setAsideUntil = now() + setAsideMs;
      options.log?.warn(
        { endpoint: name, outvotedInARow: s.consecutive, setAsideMs },
        "rpc endpoint set aside: it keeps disagreeing with the others",
      );
    }
  };
  const unresolved = (answers: EndpointAnswer[]) => {
    for (const a of answers) if (a.kind !== "error") standing.get(a.endpoint)!.unresolved++;
  };

  /**
   * The group of identical answers that reached k, if any: found answers first (a found,
   * finalized fact outranks a "not found" only when k endpoints state it).
   */
  function winner(answers: EndpointAnswer[]): string | null {
    const counts = new Map<string, number>();
    for (const a of answers) {
      if (a.kind === "error") continue;
      const key = a.kind === "not_found" ? "not_found" : a.digest!;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    let best: string | null = null;
    for (const [key, n] of counts) {
      if (n >= k && (best === null || best === "not_found")) best = key;
    }
    return best;
  }

  const keyOf = (a: EndpointAnswer) => (a.kind === "not_found" ? "not_found" : a.digest);

  /** Records who agreed with the winning answer and who was outvoted. */
  function settle(win: string, answers: EndpointAnswer[], method: string, signature: string) {
    for (const a of answers) {
      if (a.kind === "error") continue;
      if (keyOf(a) === win) agreed(a.endpoint);
      else outvoted(a.endpoint, method, signature);
    }
  }

  async function askTransaction(
    member: QuorumMember,
    signature: string,
    commitment: "confirmed" | "finalized",
    signal?: AbortSignal,
  ): Promise<{ answer: EndpointAnswer; fetched: FetchedTransaction | null }> {
    try {
      const fetched = await observed(
        member,
        () => member.rpc.getTransaction(signature, commitment, signal ? { signal } : {}),
        signal,
      );
      if (fetched === null) {
        return {
          answer: { endpoint: member.name, kind: "not_found", digest: null, value: null },
          fetched,
        };
      }
      return {
        answer: {
          endpoint: member.name,
          kind: "answer",
          digest: factsDigest(fetched.facts),
          value: factsToJson(fetched.facts),
        },
        fetched,
      };
    } catch (error) {
      return {
        answer: {
          endpoint: member.name,
          kind: "error",
          digest: null,
          error: message(error),
          ...(isAppError(error) && error.code === "malformed_transaction"
            ? { malformed: true }
            : {}),
        },
        fetched: null,
      };
    }
  }

  /**
   * Asks k endpoints at once, then the next ones (hedged: see `hedged`) until k answers agree
   * or every endpoint has answered; `all` asks every endpoint and waits for each (tx inspect).
   */
  async function collectTransaction(
    signature: string,
    commitment: "confirmed" | "finalized",
    all: boolean,
    signal?: AbortSignal,
  ) {
    const queue = order();
    if (all) {
      const results = await Promise.all(
        queue.map((m) => askTransaction(m, signature, commitment, signal)),
      );
      return { results, win: winner(results.map((r) => r.answer)) };
    }
    const results: Awaited<ReturnType<typeof askTransaction>>[] = [];
    let win: string | null = null;
    await hedged(
      "getTransaction",
      queue,
      k,
      (m, stop) => askTransaction(m, signature, commitment, eitherSignal(signal, stop)),
      (_, outcome) => {
        // askTransaction answers every failure as an `error` answer.
        if (!outcome.ok) return true;
        results.push(outcome.value);
        win = winner(results.map((r) => r.answer));
        return outcome.value.answer.kind === "error";
      },
      () => win !== null,
    );
    return { results, win };
  }

  async function getTransaction(
    signature: string,
    commitment: "confirmed" | "finalized" = "finalized",
    options: { signal?: AbortSignal } = {},
  ): Promise<FetchedTransaction | null> {
    const { results, win } = await collectTransaction(signature, commitment, false, options.signal);
    const answers = results.map((r) => r.answer);
    if (win !== null) {
      settle(win, answers, "getTransaction", signature);
      if (win === "not_found") return null;
      return results.find((r) => r.answer.digest === win)!.fetched;
    }
    const digests = new Set(answers.filter((a) => a.kind === "answer").map((a) => a.digest));
    if (digests.size >= 2) {
      unresolved(answers);
      throw new RpcDisagreementError({
        signature,
        method: "getTransaction",
        quorum: k,
        answers,
      });
    }
    // k endpoints answering something unparseable is what one does at RPC_QUORUM=1: the
    // verifier takes it as RPC trouble and retries the job with backoff.
    const malformed = answers.filter((a) => a.malformed);
    if (malformed.length >= k) {
      throw new AppError(
        "malformed_transaction",
        `getTransaction ${signature}: ${malformed.length} endpoints answered it malformed (${malformed[0]!.error})`,
      );
    }
    // One version of the facts, but not k of them: the others failed or do not have it yet
    // (a node a little behind answers "not found" at finalized). Retried, never decided on.
    if (digests.size === 1) {
      for (const a of answers) {
        if (a.kind === "not_found")
          leftOutTimes.set(a.endpoint, (leftOutTimes.get(a.endpoint) ?? 0) + 1);
      }
    }
    throw new AppError(
      "rpc_unavailable",
      `getTransaction ${signature}: fewer than ${k} endpoints answered it identically (${answers
        .map((a) => `${a.endpoint}: ${a.kind === "error" ? a.error : a.kind}`)
        .join("; ")})`,
    );
  }

  function statusAnswer(
    name: string,
    status: SignatureStatusInfo | null | undefined,
    error?: string,
  ): EndpointAnswer {
    if (error !== undefined) return { endpoint: name, kind: "error", digest: null, error };
    if (!status) return { endpoint: name, kind: "not_found", digest: null, value: null };
    const value: QuorumStatusJson = {
      slot: status.slot,
      confirmationStatus: status.confirmationStatus,
      err: status.err ?? null,
    };
    // Only final answers are compared; an answer still on its way to finality has its own key
    // per endpoint so it never joins a group.
    const digest =
      status.confirmationStatus === "finalized"
        ? statusDigest(status)
        : `pending:${name}:${status.confirmationStatus}`;
    return { endpoint: name, kind: "answer", digest, value };
  }

  /**
   * Signatures k endpoints last agreed are missing (oldest first, bounded). A status short of
   * final comes from one endpoint; for these it is asked of others too: an endpoint answering
   * "confirmed" for a phantom each time it was asked first restarted the drop's wait, and the
   * job waited for ever.
   */
  const missing = new Map<string, true>();
  const MISSING_KEPT = 100_000;

  /** A status that proves nothing final: at most confirmed. */
  const capped = (s: SignatureStatusInfo): SignatureStatusInfo => ({
    ...s,
    confirmationStatus: s.confirmationStatus === "processed" ? "processed" : "confirmed",
  });

  async function getSignatureStatuses(
    signatures: string[],
    options: { signal?: AbortSignal } = {},
  ): Promise<(SignatureStatusInfo | null)[]> {
    const usable = order();
    const good = usable.filter(inGoodStanding);
    const firstPool = good.length > 0 ? good : usable;
    // The primary rotates, so an endpoint that lies "not final yet" delays a job by one poll
    // in n, not for ever.
    const start = usable.indexOf(firstPool[rotation++ % firstPool.length]!);
    const statusesOf = (m: QuorumMember, asked: string[], stop: AbortSignal) =>
      observed(
        m,
        () => m.rpc.getSignatureStatuses(asked, { signal: eitherSignal(options.signal, stop) }),
        stop,
      );
    let primary = usable[start]!;
    let first: (SignatureStatusInfo | null)[] | undefined;
    let failure: unknown = null;
    // The next endpoint in turn is asked when the primary fails or is slow; the first to
    // answer is the primary.
    await hedged(
      "getSignatureStatuses",
      usable.map((_, i) => usable[(start + i) % usable.length]!),
      1,
      (m, stop) => statusesOf(m, signatures, stop),
      (m, outcome) => {
        if (!outcome.ok) {
          failure = outcome.error;
          return true;
        }
        primary = m;
        first = outcome.value;
        return false;
      },
      () => first !== undefined,
    );
    if (first === undefined) throw failure;
    const out: (SignatureStatusInfo | null)[] = first.map((s) => s ?? null);
    // Final answers (finalized, or not found) are the ones a verdict rests on: cross-check them,
    // and a status short of final for a signature k endpoints last called missing.
    const open = new Map<
      number,
      { statuses: (SignatureStatusInfo | null)[]; answers: EndpointAnswer[]; recheck: boolean }
    >();
    first.forEach((s, i) => {
      const recheck = !!s && s.confirmationStatus !== "finalized" && missing.has(signatures[i]!);
      if (!s || s.confirmationStatus === "finalized" || recheck) {
        open.set(i, {
          statuses: [s ?? null],
          answers: [statusAnswer(primary.name, s)],
          recheck,
        });
      }
    });
    const decided = (o: { answers: EndpointAnswer[]; recheck: boolean }) =>
      winner(o.answers) ??
      (o.recheck && o.answers.filter((a) => a.kind === "answer").length >= k ? "seen" : null);
    const undecided = () => [...open].filter(([, o]) => decided(o) === null).map(([i]) => i);
    if (undecided().length > 0) {
      // Each endpoint is asked about the signatures still undecided when it is asked; an answer
      // coming after others decided a signature is not taken for it.
      await hedged(
        "getSignatureStatuses",
        usable.filter((m) => m !== primary),
        1,
        async (m, stop) => {
          const indexes = undecided();
          try {
            const asked = indexes.map((i) => signatures[i]!);
            return { indexes, replies: await statusesOf(m, asked, stop), error: null };
          } catch (error) {
            return { indexes, replies: [], error: message(error) };
          }
        },
        (m, outcome) => {
          if (!outcome.ok) return true;
          const { indexes, replies, error } = outcome.value;
          indexes.forEach((i, j) => {
            const o = open.get(i)!;
            if (decided(o) !== null) return;
            if (error !== null) {
              o.answers.push(statusAnswer(m.name, null, error));
              return;
            }
            o.statuses.push(replies[j] ?? null);
            o.answers.push(statusAnswer(m.name, replies[j]));
          });
          return error !== null;
        },
        () => undecided().length === 0,
      );
    }
    let shortOfQuorum = 0;
    for (const [i, o] of open) {
      const signature = signatures[i]!;
      const win = decided(o);
      if (win === "not_found") missing.set(signature, true);
      else if (win !== null) missing.delete(signature);
      if (missing.size > MISSING_KEPT) missing.delete(missing.keys().next().value!);
      if (win === "seen") {
        // k endpoints see it, none final yet: it landed after all.
        out[i] = capped(o.statuses.find((s) => s !== null)!);
        continue;
      }
      if (win !== null) {
        settle(win, o.answers, "getSignatureStatuses", signature);
        out[i] =
          win === "not_found" ? null : o.statuses[o.answers.findIndex((a) => a.digest === win)]!;
        continue;
      }
      const finals = new Set(
        o.answers
          .filter((a) => a.kind === "answer" && a.digest?.startsWith("pending:") === false)
          .map((a) => a.digest),
      );
      const found = o.statuses.find((s) => s !== null) ?? null;
      if (finals.size >= 2) {
        unresolved(o.answers);
        const disputed: DisputedStatus = {
          ...capped(found!),
          disagreement: {
            signature,
            method: "getSignatureStatuses",
            quorum: k,
            answers: o.answers,
          },
        };
        out[i] = disputed;
      } else if (found) {
        // Seen by some, final by fewer than k: it exists, and is not proven final yet.
        out[i] = capped(found);
      } else {
        shortOfQuorum++;
      }
    }
    if (shortOfQuorum > 0) {
      // "Not found" from fewer than k endpoints (the others failed) would count towards a
      // `dropped` verdict on one node's word.
      throw new AppError(
        "rpc_unavailable",
        `getSignatureStatuses: ${shortOfQuorum} signatures not found by fewer than ${k} endpoints (the others did not answer)`,
      );
    }
    return out;
  }

  /**
   * Asks k endpoints at once (in standing order), and the next ones in place of those that
   * fail, until k answered; `rpc_unavailable` when fewer than k could. `wide` asks every
   * endpoint neither failing nor set aside at once (at least k), slow ones included, and waits
   * for each up to the hedge delay of `method`. `ask` is given a signal that fires when the
   * question is settled without that call or when the caller's `signal` does.
   */
  async function fromK<T>(
    method: string,
    what: string,
    ask: (m: QuorumMember, signal: AbortSignal) => Promise<T>,
    options: {
      wide?: boolean;
      /** Endpoints asked already (left out). */
      skip?: ReadonlySet<string>;
      /** How many answers are wanted (default k). */
      need?: number;
      signal?: AbortSignal;
    } = {},
  ) {
    const { wide = false, skip = new Set<string>(), need = k, signal } = options;
    const answers: { member: QuorumMember; value: T }[] = [];
    const errors: string[] = [];
    const queue = order().filter((m) => !skip.has(m.name));
    // Wide, an endpoint slow to answer is asked too (it comes after those in good standing),
    // and every one is waited for up to the hedge delay, not only until `need` answered: left
    // out once slow, an honest endpoint was never asked again, never answered in time again,
    // and a frozen one's slot stayed the k-th highest for the life of the process.
    const usable = queue.filter((m) => !isAside(m) && !isFailing(m)).length;
    await hedged(
      method,
      queue,
      wide ? Math.max(need, usable) : need,
      (m, stop) => {
        // A call stopped by the caller is no failure of the endpoint either.
        const either = eitherSignal(signal, stop);
        return observed(m, () => ask(m, either), either);
      },
      (m, outcome) => {
        if (outcome.ok) answers.push({ member: m, value: outcome.value });
        else errors.push(`${m.name}: ${message(outcome.error)}`);
        return !outcome.ok;
      },
      (waiting) => answers.length >= need && (!wide || waiting === 0),
    );
    if (answers.length < need) {
      throw new AppError(
        "rpc_unavailable",
        `${what}: fewer than ${need} endpoints answered (${errors.join("; ")})`,
      );
    }
    return answers;
  }

  /**
   * The k-th highest answer of every endpoint neither failing nor set aside that answers within
   * the hedge delay: a slot k of them reached. No single endpoint moves it forward, nor holds it
   * back: the lowest of k let one endpoint answering a frozen old slot keep the drop window from
   * ever passing.
   */
  async function quorumNumber(
    method: string,
    ask: (m: QuorumMember, signal: AbortSignal) => Promise<number>,
    signal: AbortSignal | undefined,
  ) {
    const answers = await fromK(method, method, ask, { wide: true, ...(signal ? { signal } : {}) });
    const values = answers.map((a) => a.value).sort((a, b) => b - a);
    return values[k - 1]!;
  }

  /**
   * The highest finalized slot this quorum has answered: the ledger calls a vault's history
   * read through that slot's block time, so an entry listed at or below it is never one a node
   * merely has not seen yet (see `confirmedByTransactions`). Null until one was asked.
   */
  let finalizedSlot: number | null = null;

  async function finalizedAware(
    commitment: "confirmed" | "finalized" = "finalized",
    options: { signal?: AbortSignal } = {},
  ): Promise<number> {
    const slot = await quorumNumber(
      "getSlot",
      (m, signal) => m.rpc.getSlot(commitment, { signal }),
      options.signal,
    );
    if (commitment === "finalized") finalizedSlot = Math.max(finalizedSlot ?? 0, slot);
    return slot;
  }

  /**
   * The last entry of each page this quorum returned, with its slot: a page ends at a slot
   * boundary (it holds every entry of its last slot), so when the next page starts `before` one
   * of them, every entry of that slot is listed already; one ending inside a slot of more than a
   * page says so (`slotListed` false). Bounded: the oldest are forgotten.
   */
  const pageEnds = new Map<string, { slot: number; slotListed: boolean }>();
  const PAGE_ENDS_KEPT = 10_000;
  const rememberPageEnd = (page: AddressSignatureInfo[], midSlot: ReadonlySet<string>) => {
    const last = page.at(-1);
    if (!last) return;
    pageEnds.delete(last.signature);
    // A page ending inside a slot (see `getSignaturesForAddress`): the slot's older entries follow.
    pageEnds.set(last.signature, { slot: last.slot, slotListed: !midSlot.has(last.signature) });
    if (pageEnds.size > PAGE_ENDS_KEPT) pageEnds.delete(pageEnds.keys().next().value!);
  };

  /**
   * Where a page asked `before` a signature starts: that signature's slot, and whether every
   * entry of the slot is listed already (it ended a page this quorum returned). A `before` this
   * quorum did not return (a cursor kept across a restart) is dated by its transaction, read
   * under the quorum.
   */
  async function startOfPage(address: string, before: string) {
    const known = pageEnds.get(before);
    if (known !== undefined) return known;
    const fetched = await getTransaction(before);
    if (fetched === null) {
      throw new AppError(
        "rpc_unavailable",
        `getSignaturesForAddress ${address}: the page's start ${before} is no transaction ${k} endpoints know`,
      );
    }
    return { slot: fetched.facts.slot, slotListed: false };
  }

  /**
   * One endpoint's page of a vault's history. A page listing one signature twice is that
   * endpoint's failure (the next endpoint is asked in its place): counted as two endpoints, one
   * endpoint alone put a made-up signature into the history, and every later read stopped at it.
   */
  async function listingOf(
    m: QuorumMember,
    address: string,
    options: { before?: string; until?: string; limit?: number; signal?: AbortSignal },
  ): Promise<AddressSignatureInfo[]> {
    const page = await m.rpc.getSignaturesForAddress(address, options);
    const seen = new Set<string>();
    for (const e of page) {
      if (seen.has(e.signature)) {
        outvoted(m.name, "getSignaturesForAddress", e.signature);
        throw new AppError(
          "rpc_unavailable",
          `getSignaturesForAddress ${address}: ${m.name} lists ${e.signature} twice`,
        );
      }
      seen.add(e.signature);
    }
    return page;
  }

  /**
   * k endpoints' pages of one listing that place every signature they share at one slot and
   * block time. When two place one differently, the next endpoints are asked one at a time
   * until k agree on it; those that differ are outvoted and their pages set apart (more are
   * asked in their place). No k agreeing is a disagreement (`sameListedFacts`): one endpoint
   * listed first and listing an entry one slot off held every read back, never set aside.
   */
  async function settledListings(
    address: string,
    ask: (m: QuorumMember, signal: AbortSignal) => Promise<AddressSignatureInfo[]>,
    /** Endpoints not asked: their listing of this read did not check out. */
    excluded: ReadonlySet<string>,
    signal: AbortSignal | undefined,
  ): Promise<{ member: QuorumMember; value: AddressSignatureInfo[] }[]> {
    const what = `getSignaturesForAddress ${address}`;
    const method = "getSignaturesForAddress";
    const caller = signal ? { signal } : {};
    const answers = await fromK(method, what, ask, { skip: excluded, ...caller });
    const asked = new Set([...excluded, ...answers.map((a) => a.member.name)]);
    const askMore = async (need: number) => {
      const more = await fromK(method, what, ask, { skip: new Set(asked), need, ...caller });
      for (const a of more) asked.add(a.member.name);
      answers.push(...more);
    };
    for (;;) {
      const signature = listingConflict(answers);
      if (signature === null) return answers;
      const entries = answers.flatMap(({ member, value }) =>
        value.filter((e) => e.signature === signature).map((e) => ({ member, ...e })),
      );
      const fits = (e: AddressSignatureInfo, c: AddressSignatureInfo) =>
        e.slot === c.slot &&
        (e.blockTime === c.blockTime || (c.blockTime !== null && e.blockTime === null));
      const backed = entries
        .map((c) => ({ c, n: entries.filter((e) => fits(e, c)).length }))
        .filter((b) => b.n >= k)
        .sort((a, b) => b.n - a.n)[0]?.c;
      const losers = backed
        ? entries.filter(
            (e) =>
              e.slot !== backed.slot ||
              (e.blockTime !== null &&
                backed.blockTime !== null &&
                e.blockTime !== backed.blockTime),
          )
        : [];
      try {
        if (losers.length > 0) {
          for (const l of losers) {
            outvoted(l.member.name, "getSignaturesForAddress", signature);
            answers.splice(
              answers.findIndex((a) => a.member === l.member),
              1,
            );
          }
          if (answers.length < k) await askMore(k - answers.length);
        } else await askMore(1);
      } catch {
        // No k endpoints place it alike: the read waits (and says who placed it where).
        sameListedFacts(address, [
          ...answers,
          ...losers.map((l) => ({ member: l.member, value: [l] })),
        ]);
        throw new AppError("rpc_unavailable", `${what}: fewer than ${k} endpoints agree`);
      }
    }
  }

  /**
   * One page of a vault's history: the union of what k endpoints list, so an endpoint that
   * leaves a transaction out cannot hide it while one of the k lists it. Each transaction listed
   * is then read through getTransaction, under the quorum.
   *
   * Paging stays exact for the union: an endpoint whose page came back full has listed only down
   * to its last entry, so the union is kept only above the highest slot at which a full page
   * ended (every endpoint asked has listed everything above it), and the next page starts below
   * the oldest entry kept. When that leaves less than `limit`, the next pages are asked at once,
   * so a page shorter than `limit` means "nothing older" to the caller, and only when every
   * endpoint asked said so.
   *
   * An endpoint that lists entries at or above `before` (one ignoring it re-lists the newest
   * page) did not answer the question: those entries are dropped and its page counts as short,
   * so it can neither fill the page with entries listed already (the union then came back
   * short, and the ledger took it for the end of the history) nor stop the page at its own end.
   */
  async function getSignaturesForAddress(
    address: string,
    options: { before?: string; until?: string; limit?: number; signal?: AbortSignal } = {},
  ): Promise<AddressSignatureInfo[]> {
    const limit = options.limit ?? 1000;
    const out: AddressSignatureInfo[] = [];
    let before = options.before;
    let start = before === undefined ? null : await startOfPage(address, before);
    let ask = limit;
    // Nothing above an entry held back is returned: the caller's next read lists `until` the
    // newest entry it was given, so one kept above it would leave it out of every later read.
    const visible = (page: AddressSignatureInfo[]) =>
      page.slice(page.findLastIndex((e) => held.has(e.signature)) + 1);
    /** Entries of this read that end a page inside a slot. */
    const midSlotEnds = new Set<string>();
    const done = (page: AddressSignatureInfo[]) => {
      rememberPageEnd(visible(page), midSlotEnds);
      return visible(page);
    };
    /**
     * Entries not returned yet by this read: past a page that ended inside a slot, an endpoint
     * may list again entries of the slot it placed above that end.
     */
    const fresh = (entries: AddressSignatureInfo[]) => {
      const seen = new Set(out.map((e) => e.signature));
      return entries.filter((e) => !seen.has(e.signature));
    };
    /** Entries held back as the newest, not yet readable (see below). */
    const held = new Set<string>();
    /** Endpoints whose listing in this read did not check out; others are asked instead. */
    const excluded = new Set<string>();
    let refuted: AppError | null = null;
    for (;;) {
      let answers: Awaited<ReturnType<typeof settledListings>>;
      try {
        answers = await settledListings(
          address,
          (m, signal) =>
            listingOf(m, address, {
              ...options,
              limit: ask,
              ...(before === undefined ? {} : { before }),
              signal,
            }),
          excluded,
          options.signal,
        );
      } catch (error) {
        // Too few endpoints left once those listing a made-up entry are set apart: the read
        // fails naming that entry.
        if (refuted !== null && isAppError(error) && error.code === "rpc_unavailable") {
          throw refuted;
        }
        throw error;
      }
      const listed = answers.map(({ member, value }) => {
        if (start === null) return { member, value, full: value.length >= ask };
        const { slot, slotListed } = start;
        const above = value.some((e) => e.signature === before || e.slot > slot);
        if (above) outvoted(member.name, "getSignaturesForAddress", before!);
        // Entries of the start's own slot are older or newer than it by the node's order
        // within the slot, which only the node knows; once that slot is listed whole, none
        // is new.
        const older = value.filter(
          (e) => e.signature !== before && (e.slot < slot || (e.slot === slot && !slotListed)),
        );
        return { member, value: older, full: !above && value.length >= ask };
      });
      const checked = await confirmedByTransactions(
        address,
        unionOfListings(sameListedFacts(address, listed)),
        listed,
        options.before === undefined,
      );
      if ("refuted" in checked) {
        // The endpoints listing an entry that is no transaction of the address (read under
        // the quorum) are outvoted and the page is asked of the others: one endpoint listed
        // first and adding one such entry failed every read, and the others were never asked.
        refuted = checked.refuted;
        for (const m of checked.listers) {
          outvoted(m.name, "getSignaturesForAddress", checked.signature);
          excluded.add(m.name);
        }
        continue;
      }
      const union = checked.entries;
      for (const signature of checked.held) held.add(signature);
      const full = answers.filter((_, i) => listed[i]!.full).map((a) => a.value);
      if (full.length === 0) return done([...out, ...fresh(union)]);
      const cut = Math.max(...full.map((p) => p.at(-1)!.slot));
      const kept = union.filter((e) => e.slot > cut);
      if (kept.length === 0 || held.has(kept.at(-1)!.signature)) {
        // Every entry of a full page shares one slot, or the page ends on an entry held back
        // (no cursor: a node that does not know it lists nothing older): a longer page reaches
        // past it.
        const ends = new Set(full.map((p) => p.at(-1)!.signature));
        const end = [...ends][0]!;
        const at = union.findIndex((e) => e.signature === end);
        if (ask >= 1000 && kept.length === 0 && ends.size === 1 && at >= 0 && !held.has(end)) {
          // More than a page of one slot (an operator can land over 1,000 transactions naming
          // the vault in one block), and every full page ends on the same entry: each endpoint
          // listed all it places above it, so the next page starts below it, inside the slot,
          // and none of the slot's entries counts as listed (the order within it is the node's).
          out.push(...fresh(union.slice(0, at + 1)));
          midSlotEnds.add(end);
          if (visible(out).length >= limit) return done(out);
          before = end;
          start = { slot: union[at]!.slot, slotListed: false };
          continue;
        }
        if (ask >= 1000) {
          throw new AppError(
            "rpc_unavailable",
            `getSignaturesForAddress ${address}: ${ask} signatures in slot ${cut} ` +
              "leave no page boundary (or end on one held back)",
          );
        }
        ask = Math.min(1000, ask * 2);
        continue;
      }
      out.push(...fresh(kept));
      if (visible(out).length >= limit) return done(out);
      before = kept.at(-1)!.signature;
      start = { slot: kept.at(-1)!.slot, slotListed: true };
    }
  }

  /**
   * A union's entries that not every endpoint listed, checked against the transaction itself
   * (read under the quorum): one endpoint alone cannot add a signature that is no transaction
   * of the address, nor date a real one at another slot or time. A made-up entry used as the
   * next page's `before` made an honest node list nothing older (a node answers an unknown
   * `before` with an empty page), and a real one at a false slot made it skip the range between.
   * Such an entry is `refuted`, with the endpoints that listed it.
   *
   * Entries newer than every entry all endpoints listed and whose transaction cannot be read
   * yet are the newest, which one node has and another not yet: in a read from the top
   * (`holdBack`: no `before`) they are `held` for the next read (left in place among `entries`
   * for paging only), but only above the finalized slot the quorum answered. At or below it the
   * ledger calls the history read through that slot's time: an operator's endpoint leaving out
   * its vault's newest debit and answering "not found" for it had the night's run call the
   * window read without it. The entries above one held back are left out of the read with it
   * (see `done`): kept, the ledger's next read (`until` its newest line) never listed it again.
   * Anything else that does not check out (the endpoints disagree on the transaction, or too
   * few answer) fails the read.
   */
  async function confirmedByTransactions(
    address: string,
    union: AddressSignatureInfo[],
    listed: { member: QuorumMember; value: AddressSignatureInfo[] }[],
    holdBack: boolean,
  ): Promise<
    | { entries: AddressSignatureInfo[]; held: string[] }
    | { refuted: AppError; signature: string; listers: QuorumMember[] }
  > {
    // Endpoints, not entries: a page listing one signature twice is one endpoint's word.
    const listedBy = new Map<string, number>();
    for (const { value } of listed) {
      for (const signature of new Set(value.map((e) => e.signature))) {
        listedBy.set(signature, (listedBy.get(signature) ?? 0) + 1);
      }
    }
    const everywhere = (e: AddressSignatureInfo) => listedBy.get(e.signature) === listed.length;
    const newestCommon = union.findIndex(everywhere);
    // Entries newer than every entry all endpoints listed (all of them when none is common):
    // the ones a node ahead may have and another not yet.
    const newestEnd = newestCommon === -1 ? union.length : newestCommon;
    const read = new Map<number, AddressSignatureInfo>();
    const held: string[] = [];
    // The newest are read oldest first, and the first that cannot be read yet is held back
    // with every newer one, unread: the read returns nothing at or above an entry held back
    // anyway. A busy vault's node a few seconds ahead costs one failed read, not one a
    // transaction, and an endpoint listing a page of entries no one can read costs one too.
    const order = [
      ...Array.from({ length: newestEnd }, (_, i) => newestEnd - 1 - i),
      ...Array.from({ length: union.length - newestEnd }, (_, i) => newestEnd + i),
    ];
    for (const i of order) {
      const e = union[i]!;
      if (held.length > 0 && i < newestEnd) {
        held.push(e.signature);
        read.set(i, e);
        continue;
      }
      if (everywhere(e)) {
        read.set(i, e);
        continue;
      }
      let fetched: FetchedTransaction | null = null;
      let failure: unknown = null;
      try {
        fetched = await getTransaction(e.signature);
      } catch (error) {
        failure = error;
      }
      if (
        fetched === null &&
        holdBack &&
        i < newestEnd &&
        !(isAppError(failure) && failure.code === "rpc_disagreement") &&
        e.slot > (finalizedSlot ?? (await finalizedAware("finalized")))
      ) {
        held.push(e.signature);
        read.set(i, e);
        continue;
      }
      const facts = fetched?.facts;
      if (
        !facts ||
        facts.slot !== e.slot ||
        (e.blockTime !== null && facts.blockTime !== e.blockTime) ||
        !facts.accounts.includes(address)
      ) {
        const error = new AppError(
          "rpc_disagreement",
          `getSignaturesForAddress ${address}: ${e.signature} is listed by ${listedBy.get(e.signature)} of ${listed.length} endpoints at slot ${e.slot}, but ${
            facts
              ? `the transaction read under the quorum is at slot ${facts.slot}, block time ${facts.blockTime}${facts.accounts.includes(address) ? "" : ", and does not name the address"}`
              : `no transaction could be read under the quorum (${failure === null ? "none found" : message(failure)})`
          }`,
          { signature: e.signature },
        );
        // k endpoints returned its transaction and it is not the address's (another slot or
        // time, or the address not in it): those listing it are wrong. "Not found" from k
        // proves nothing (a node behind, or one with a hole in its index, answers it for a
        // theft another endpoint rightly lists), and when they could not agree nobody is
        // shown wrong: the read waits.
        if (failure !== null || fetched === null) throw error;
        return {
          refuted: error,
          signature: e.signature,
          listers: listed
            .filter(({ value }) => value.some((v) => v.signature === e.signature))
            .map(({ member }) => member),
        };
      }
      read.set(i, e.blockTime === null ? { ...e, blockTime: facts.blockTime } : e);
    }
    const out = union.flatMap((_, i) => read.get(i) ?? []);
    return { entries: out, held };
  }
  /**
   * What k endpoints agree the vault holds: the same amount from k of them (asked like a
   * transaction: k at once, then one more at a time), at the lowest slot they read it at. A
   * balance is not compared at one slot: providers answer at their own slots, and the reader
   * keeps a balance only when nothing listed is newer than its slot, which the lowest one keeps
   * true. No k agreeing (one lies, or the vault moved between their slots) is an error: the
   * statement then closes on the last transaction read, under the quorum.
   */
  /**
   * What k endpoints agree a token account is (program, mint, amount, delegate, owner, or none),
   * the same answer from k endpoints, asked in order until k agree, at the lowest of their slots.
   */
  async function getTokenAccount(
    address: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<TokenAccountRead> {
    const what = `getTokenAccount ${address}`;
    const queue = order();
    const answers: { name: string; read: TokenAccountRead; key: string }[] = [];
    const errors: string[] = [];
    const keyOf = (r: TokenAccountRead) =>
      r.account === null
        ? "none"
        : `${r.account.programId} ${r.account.mint ?? "-"} ${r.account.amount ?? "-"} ${
            r.account.delegate ? `${r.account.delegate.address}:${r.account.delegate.amount}` : "-"
          } ${r.account.owner ?? "-"}`;
    const agreed = (): TokenAccountRead | null => {
      for (const a of answers) {
        const same = answers.filter((b) => b.key === a.key);
        if (same.length >= k) {
          return { ...a.read, slot: Math.min(...same.map((b) => b.read.slot)) };
        }
      }
      return null;
    };
    let win: TokenAccountRead | null = null;
    await hedged(
      "getTokenAccount",
      queue,
      k,
      (m, stop) => {
        const signal = eitherSignal(options.signal, stop);
        return observed(m, () => m.rpc.getTokenAccount(address, { signal }), signal);
      },
      (m, outcome) => {
        if (!outcome.ok) {
          errors.push(`${m.name}: ${message(outcome.error)}`);
          return true;
        }
        answers.push({ name: m.name, read: outcome.value, key: keyOf(outcome.value) });
        win = agreed();
        return false;
      },
      () => win !== null,
    );
    if (win !== null) return win;
    const said = [
      ...answers.map((a) => `${a.name}: ${a.key} at slot ${a.read.slot}`),
      ...errors,
    ].join("; ");
    throw new AppError(
      new Set(answers.map((a) => a.key)).size >= 2 ? "rpc_disagreement" : "rpc_unavailable",
      `${what}: no ${k} endpoints report the same account (${said})`,
    );
  }

  /**
   * A slot's block time: one fact the cluster agreed, so k endpoints must give the same one
   * (an old time would hold every ledger read back, a late one would claim a period read before
   * the chain had finalized its end). When the first k differ, the next endpoints are asked one
   * at a time until k agree, and those that gave another time are outvoted: one endpoint listed
   * first and answering a time two days early held every nightly run back, never set aside.
   */
  async function getBlockTime(
    slot: number,
    options: { signal?: AbortSignal } = {},
  ): Promise<number> {
    const what = `getBlockTime ${slot}`;
    const ask = (m: QuorumMember, signal: AbortSignal) => m.rpc.getBlockTime(slot, { signal });
    const caller = options.signal ? { signal: options.signal } : {};
    const answers = await fromK("getBlockTime", what, ask, caller);
    for (;;) {
      const counts = new Map<number, number>();
      for (const a of answers) counts.set(a.value, (counts.get(a.value) ?? 0) + 1);
      const win = [...counts].find(([, n]) => n >= k)?.[0];
      if (win !== undefined) {
        for (const a of answers) {
          if (a.value === win) agreed(a.member.name);
          else outvoted(a.member.name, "getBlockTime", String(slot));
        }
        return win;
      }
      try {
        const skip = new Set(answers.map((a) => a.member.name));
        answers.push(...(await fromK("getBlockTime", what, ask, { skip, need: 1, ...caller })));
      } catch {
        for (const a of answers) standing.get(a.member.name)!.unresolved++;
        throw new AppError(
          "rpc_disagreement",
          `${what}: endpoints disagree (${answers
            .map((a) => `${a.member.name}: ${a.value}`)
            .join("; ")})`,
        );
      }
    }
  }

  /**
   * Each member's look on its own endpoint (`RpcPool.findAnywhere`), all at once, joined: a
   * signature one endpoint shows is found, an endpoint that cannot answer is named, and each
   * endpoint's finalized slot is its own. The k endpoints agreeing a signature is missing are
   * a poll's; before a drop, every endpoint is asked, as with one pool over the list.
   */
  async function findAnywhere(signatures: string[], signal?: AbortSignal): Promise<FoundAnywhere> {
    const looks = await Promise.all(
      members.map(async (m) => ({
        m,
        look: (await m.rpc.findAnywhere?.(signatures, signal).catch(() => null)) ?? null,
      })),
    );
    const found = new Map<string, SignatureStatusInfo>();
    const shownBy = new Map<string, QuorumMember[]>();
    const slots = new Map<string, number>();
    const unanswered: string[] = [];
    for (const { m, look } of looks) {
      if (look === null || look.unanswered.length > 0) {
        unanswered.push(m.name);
        continue;
      }
      for (const slot of look.slots.values()) slots.set(m.name, slot);
      for (const [signature, status] of look.found) {
        if (!found.has(signature)) found.set(signature, status);
        shownBy.set(signature, [...(shownBy.get(signature) ?? []), m]);
      }
    }
    // Shown by some of the endpoints answering only: backed when one of them serves a
    // transaction its fee payer signed, else that endpoint's word alone (see `unbacked`).
    const answered = looks.length - unanswered.length;
    const unbacked = new Map<string, string[]>();
    for (const [signature, by] of shownBy) {
      if (by.length >= answered) continue;
      let backed = false;
      for (const m of by) {
        const fetched = await m.rpc
          .getTransaction(signature, "confirmed", signal ? { signal } : {})
          .catch(() => null);
        if (fetched !== null && signedByPayer(fetched.raw, signature)) {
          backed = true;
          break;
        }
      }
      if (!backed)
        unbacked.set(
          signature,
          by.map((m) => m.name),
        );
    }
    const lowestSlot = slots.size === 0 ? null : Math.min(...slots.values());
    return { found, unbacked, unanswered, lowestSlot, slots };
  }

  /** Every member's finalized slot, each asked on its own endpoint, all at once. */
  async function finalizedSlots(signal?: AbortSignal): Promise<EndpointSlots> {
    const slots = new Map<string, number>();
    const unanswered: string[] = [];
    await Promise.all(
      members.map(async (m) => {
        const slot = await m.rpc.getSlot("finalized", signal ? { signal } : {}).catch(() => null);
        if (slot === null) unanswered.push(m.name);
        else slots.set(m.name, slot);
      }),
    );
    return { slots, unanswered };
  }

  return {
    // A null status is k endpoints' "not found": the drop rule may count on it.
    agreedMisses: true,
    getSignatureStatuses,
    getTransaction,
    findAnywhere,
    finalizedSlots,
    getSlot: finalizedAware,
    getBlockHeight: (commitment = "finalized", options = {}) =>
      quorumNumber(
        "getBlockHeight",
        (m, signal) => m.rpc.getBlockHeight(commitment, { signal }),
        options.signal,
      ),
    getBlockTime,
    getSignaturesForAddress,
    getTokenAccount,
    // Every fact is asked of k members at once: the slowest of them paces the pool.
    requestRate: () => Math.min(...members.map((m) => m.rpc.requestRate())),
    stats: () => members.flatMap((m) => m.rpc.stats()),
    async close() {
      await Promise.all(members.map((m) => m.rpc.close()));
    },
    leftOut() {
      return [...leftOutTimes].map(([endpoint, times]) => ({ endpoint, times }));
    },
    async probeEach(signal) {
      return Promise.all(
        members.map(async (m) => {
          try {
            await m.rpc.getSlot("finalized", signal ? { signal } : {});
            return { endpoint: m.name, error: null };
          } catch (error) {
            return {
              endpoint: m.name,
              error: error instanceof Error ? error.message : String(error),
            };
          }
        }),
      );
    },
    quorumStatus() {
      const t = now();
      return {
        quorum: k,
        endpoints: members.map((m) => {
          const s = standing.get(m.name)!;
          return {
            endpoint: m.name,
            outvoted: s.outvoted,
            unresolved: s.unresolved,
            consecutiveOutvoted: s.consecutive,
            setAside: s.setAsideUntil > t,
            setAsideUntil: s.setAsideUntil > t ? s.setAsideUntil : null,
          };
        }),
      };
    },
    async inspect(signature, commitment = "finalized") {
      const { results, win } = await collectTransaction(signature, commitment, true);
      return {
        quorum: k,
        agreed: win !== null,
        digest: win === "not_found" ? null : win,
        answers: results.map((r) => r.answer),
      };
    },
  };
}

/** True when `rpc` is a quorum (it has standing to report). */
export function isQuorumRpc(rpc: RpcPool): rpc is QuorumRpc {
  return typeof (rpc as Partial<QuorumRpc>).quorumStatus === "function";
}

/**
 * The verifier's RPC from the config: the failover pool over `SOLANA_RPC_URLS` when
 * `RPC_QUORUM` is 1, else a quorum of k over one pool per endpoint (each with the `RPC_*` limits).
 */
export function rpcFromConfig(config: Config, log?: Logger): RpcPool {
  const k = config.RPC_QUORUM;
  if (k <= 1) return rpcPoolFromConfig(config, log);
  const names = endpointNames(config.SOLANA_RPC_URLS);
  const members = config.SOLANA_RPC_URLS.map((url, i) => ({
    name: names[i]!,
    rpc: rpcPoolFromConfig(config, log, {
      endpoints: [endpointFromConfig(config, url)],
      // A single endpoint has nothing to fail over to: give up sooner and let the quorum ask
      // the next one.
      maxAttempts: 3,
    }),
  }));
  return createQuorumRpc({ members, quorum: k, ...(log ? { log } : {}) });
}

/**
 * `/readyz`'s RPC probe over a quorum: ready while `k` endpoints answer, each one that does not
 * named (nothing listening there said in words); not ready, naming them, when fewer answer.
 */
export async function quorumReadiness(
  rpc: QuorumRpc,
  signal?: AbortSignal,
): Promise<{ detail: string } | undefined> {
  const answers = await rpc.probeEach(signal);
  const down = answers.filter((a) => a.error !== null);
  const said = down
    .map(
      (a) =>
        `${a.endpoint}: ${/\bECONNREFUSED\b/.test(a.error ?? "") ? `connection refused (${a.error})` : a.error}`,
    )
    .join("; ");
  const k = rpc.quorumStatus().quorum;
  const up = answers.length - down.length;
  if (up < k) {
    throw new Error(
      `${up} of ${answers.length} endpoints answer, fewer than the quorum of ${k}: ${said}`,
    );
  }
  return down.length === 0
    ? undefined
    : { detail: `${up} of ${answers.length} endpoints answer (quorum ${k}); ${said}` };
}
