import type { RpcDisagreement } from "../chain/quorum.js";
import type { TransactionFacts } from "../chain/transaction-facts.js";

/** A signature status as the RPC pool returns it (null: the node knows nothing of it). */
export interface SignatureStatusLike {
  signature: string;
  slot: number;
  confirmationStatus: "processed" | "confirmed" | "finalized" | null;
  err: unknown;
  /** Set by a quorum when its endpoints disagree on this status (it is then never final). */
  disagreement?: RpcDisagreement;
}

/** The part of the RPC pool (`src/chain`) the verifier uses. */
export interface VerifierRpc {
  /** Statuses with history searched; the pool splits the list into calls of at most 256. */
  getSignatureStatuses(
    signatures: string[],
    options?: { signal?: AbortSignal },
  ): Promise<(SignatureStatusLike | null)[]>;
  /**
   * The finalized transaction, or null when the node has none. `signal` (a stopping round)
   * makes it give up at once with an error.
   */
  getTransaction(
    signature: string,
    commitment?: "finalized",
    options?: { signal?: AbortSignal },
  ): Promise<{ facts: TransactionFacts; raw: unknown } | null>;
  getSlot(commitment?: "finalized", options?: { signal?: AbortSignal }): Promise<number>;
  /**
   * The signatures any endpoint shows (each asked on its own, statuses then transactions), and
   * the endpoints that could not answer. Without it, a poll's "not found" decides.
   */
  findAnywhere?(
    signatures: string[],
    signal?: AbortSignal,
  ): Promise<{
    found: Map<string, SignatureStatusLike>;
    unanswered: string[];
    /**
     * The lowest finalized slot of the endpoints that answered: a drop waits until it too is
     * past the first miss by the drop window (absent: the poll's slot decides alone).
     */
    lowestSlot?: number | null;
    /**
     * Each endpoint's finalized slot, by name: a drop waits until each endpoint has moved the
     * drop window since the signature's first miss, by its own count (see `finalizedSlots`).
     */
    slots?: ReadonlyMap<string, number>;
    /**
     * Found signatures that only some endpoints show, none with a transaction its fee payer
     * signed, by the endpoints showing each: their word holds a drop for a while only.
     */
    unbacked?: ReadonlyMap<string, readonly string[]>;
  }>;
  /**
   * Every endpoint's finalized slot, each asked on its own, and the endpoints that could not
   * tell theirs: read when signatures are first missed, the start of each endpoint's count.
   */
  finalizedSlots?(
    signal?: AbortSignal,
  ): Promise<{ slots: ReadonlyMap<string, number>; unanswered: readonly string[] }>;
  /**
   * True when every null status is k endpoints' agreed "not found" (a quorum): a signature one
   * endpoint once showed landed is then dropped like one never seen (see `StatusPoll`).
   */
  readonly agreedMisses?: boolean;
  /** Requests per second the RPC allows now; without it a round fetches all it claimed. */
  requestRate?(): number;
}
