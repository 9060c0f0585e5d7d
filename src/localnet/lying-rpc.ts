import { createHash } from "node:crypto";
import bs58 from "bs58";
import { MEMO_PROGRAM_IDS } from "../chain/parse-transaction.js";

/**
 * A lying RPC node, for testing the quorum: it serves the real chain but alters, for a share of
 * signatures, what it says about them. A lie is a function of the signature, so the node tells
 * the same lie every time it is asked, as a compromised provider would.
 */

export const lieKinds = ["amount", "memo", "owner", "error", "finality"] as const;
/**
 * `amount`: a token balance after the transaction; `memo`: the memo text; `owner`: the owner
 * of a token account; `error`: the error status (a failure called success and the reverse), in
 * the transaction and in its status; `finality`: claims finalized for what is only confirmed.
 */
export type LieKind = (typeof lieKinds)[number];

export function isLieKind(text: string): text is LieKind {
  return (lieKinds as readonly string[]).includes(text);
}

export interface RpcLies {
  /** Share (0..1) of signatures lied about. */
  share: number;
  /** Lies told, one per signature, chosen by the signature. Default all. */
  kinds: LieKind[];
  /** Seed of the choice of signatures and lies. */
  seed: string;
  /**
   * Answers the finalized slot (`getSlot`) this many slots too low once after each status poll
   * that names a signature it was never asked about: a node lying where a first miss's slot is
   * read, honest everywhere else. Default none.
   */
  lowSlotAtFirstMiss?: number;
  /**
   * Answers a status ("confirmed", at its processed slot) for every signature it does not know:
   * a phantom shown as landed, with no transaction behind it. Default false.
   */
  phantomStatuses?: boolean;
}

/** What a lying node remembers between calls (the first-miss slot lie). */
interface LiarMemory {
  asked: Set<string>;
  lowSlotDue: boolean;
}

const memories = new WeakMap<RpcLies, LiarMemory>();

function memoryOf(lies: RpcLies): LiarMemory {
  let memory = memories.get(lies);
  if (!memory) {
    memory = { asked: new Set(), lowSlotDue: false };
    memories.set(lies, memory);
  }
  return memory;
}

/** An address no honest transaction of the local world names. */
const STRANGER = "SysvarRent111111111111111111111111111111111";

function draw(lies: RpcLies, signature: string, what: string): number {
  const hash = createHash("sha256").update(`${lies.seed}/${what}/${signature}`).digest();
  return hash.readUInt32BE(0) / 2 ** 32;
}

/** The lie told about `signature`, or null when this node tells the truth about it. */
export function lieFor(lies: RpcLies, signature: string): LieKind | null {
  if (lies.kinds.length === 0 || draw(lies, signature, "share") >= lies.share) return null;
  return lies.kinds[Math.floor(draw(lies, signature, "kind") * lies.kinds.length)] ?? null;
}

type Json = Record<string, unknown>;

function flipErr(meta: Json): void {
  if (meta.err === null || meta.err === undefined) {
    meta.err = { InstructionError: [0, { Custom: 1 }] };
    meta.status = { Err: meta.err };
  } else {
    meta.err = null;
    meta.status = { Ok: null };
  }
}

/** Alters a `getTransaction` result (json encoding) by one lie; returns a changed copy. */
function alterTransaction(result: Json, lie: LieKind): Json {
  const tx = structuredClone(result);
  const meta = tx.meta as Json | undefined;
  if (!meta) return tx;
  const post = (meta.postTokenBalances ?? []) as Json[];
  const pre = (meta.preTokenBalances ?? []) as Json[];
  switch (lie) {
    case "amount": {
      const entry = post[0];
      if (!entry) return tx;
      const ui = entry.uiTokenAmount as Json;
      const amount = BigInt(ui.amount as string) + 1_000_000n;
      const decimals = ui.decimals as number;
      ui.amount = amount.toString();
      ui.uiAmount = Number(amount) / 10 ** decimals;
      ui.uiAmountString = String(ui.uiAmount);
      return tx;
    }
    case "owner": {
      const entry = post[0];
      if (!entry) return tx;
      for (const e of [...pre, ...post]) {
        if (e.accountIndex === entry.accountIndex) e.owner = STRANGER;
      }
      return tx;
    }
    case "memo": {
      const message = (tx.transaction as Json | undefined)?.message as Json | undefined;
      const keys = (message?.accountKeys ?? []) as string[];
      for (const ix of (message?.instructions ?? []) as Json[]) {
        if (!MEMO_PROGRAM_IDS.has(keys[ix.programIdIndex as number] ?? "")) continue;
        const text = Buffer.from(bs58.decode(ix.data as string)).toString("utf8");
        // Another job's id: the memo now names a job this transaction does not serve.
        const forged = text.replace(
          /job_[a-z0-9]+/,
          (id) => `${id.slice(0, -1)}${id.endsWith("x") ? "y" : "x"}`,
        );
        ix.data = bs58.encode(Buffer.from(forged === text ? `${text}!` : forged, "utf8"));
        return tx;
      }
      return tx;
    }
    case "error":
      flipErr(meta);
      return tx;
    case "finality":
      return tx;
  }
}

/**
 * Answers one JSON-RPC call as the lying node would: `call` is the honest handler; the lie is
 * applied to its result (or, for finality, to the question asked).
 */
export function callLying(
  lies: RpcLies,
  method: string,
  params: unknown[],
  call: (params: unknown[]) => unknown,
): unknown {
  if (method === "getTransaction" && typeof params[0] === "string") {
    const signature = params[0];
    const lie = lieFor(lies, signature);
    let result = call(params) as Json | null;
    if (result === null && lie === "finality") {
      // Serves at finalized what is only confirmed.
      const config = { ...((params[1] as Json | undefined) ?? {}), commitment: "confirmed" };
      result = call([signature, config]) as Json | null;
    }
    if (result === null || lie === null || typeof result !== "object") return result;
    const encoding = (params[1] as Json | undefined)?.encoding ?? "json";
    return encoding === "json" ? alterTransaction(result, lie) : result;
  }
  if (method === "getSlot" && lies.lowSlotAtFirstMiss !== undefined) {
    const config = params[0] as Json | undefined;
    const memory = memoryOf(lies);
    const slot = call(params);
    if ((config?.commitment ?? "finalized") !== "finalized" || !memory.lowSlotDue) return slot;
    memory.lowSlotDue = false;
    return Math.max(0, (slot as number) - lies.lowSlotAtFirstMiss);
  }
  if (method === "getSignatureStatuses" && Array.isArray(params[0])) {
    const signatures = params[0] as string[];
    const reply = call(params) as { context: { slot?: number }; value: (Json | null)[] };
    const memory = memoryOf(lies);
    return {
      ...reply,
      value: reply.value.map((status, i) => {
        const signature = signatures[i]!;
        if (!memory.asked.has(signature) && lies.lowSlotAtFirstMiss !== undefined) {
          memory.lowSlotDue = true;
        }
        memory.asked.add(signature);
        if (!status && lies.phantomStatuses) {
          return {
            slot: reply.context.slot ?? 0,
            confirmations: 1,
            err: null,
            status: { Ok: null },
            confirmationStatus: "confirmed",
          };
        }
        const lie = lieFor(lies, signature);
        if (!status || lie === null) return status;
        if (lie === "finality" && status.confirmationStatus !== "finalized") {
          return { ...status, confirmationStatus: "finalized", confirmations: null };
        }
        if (lie === "error") {
          const copy = { ...status };
          flipErr(copy);
          return copy;
        }
        return status;
      }),
    };
  }
  return call(params);
}
