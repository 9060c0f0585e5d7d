import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { TransactionFacts } from "../../src/chain/transaction-facts.js";
import type { SignatureStatusLike, VerifierRpc } from "../../src/verify/engine.js";

/**
 * A chain in memory for engine tests: each transaction lands at a slot and finalizes a few slots
 * later; every status poll advances the chain by `slotsPerPoll`. It counts every call.
 */
export function createFakeChain(options: { finalitySlots?: number; slotsPerPoll?: number } = {}) {
  const finality = options.finalitySlots ?? 3;
  const slotsPerPoll = options.slotsPerPoll ?? 1;
  const txs = new Map<string, { facts: TransactionFacts; landedAt: number }>();
  const calls = {
    statusCalls: 0,
    statusSignatures: 0,
    getSlot: 0,
    getTransaction: new Map<string, number>(),
  };
  let slot = 1000;
  let failures = 0;
  let gate: Promise<void> | null = null;

  const rpc: VerifierRpc = {
    async getSignatureStatuses(signatures) {
      if (gate) await gate;
      calls.statusCalls++;
      calls.statusSignatures += signatures.length;
      if (failures > 0) {
        failures--;
        throw new Error("503 Service Unavailable");
      }
      slot += slotsPerPoll;
      return signatures.map((signature): SignatureStatusLike | null => {
        const tx = txs.get(signature);
        if (!tx || tx.landedAt > slot) return null;
        return {
          signature,
          slot: tx.landedAt,
          confirmationStatus: slot - tx.landedAt >= finality ? "finalized" : "confirmed",
          err: tx.facts.succeeded ? null : tx.facts.err,
        };
      });
    },
    async getTransaction(signature) {
      calls.getTransaction.set(signature, (calls.getTransaction.get(signature) ?? 0) + 1);
      const tx = txs.get(signature);
      if (!tx || slot - tx.landedAt < finality) return null;
      // The raw answer here is a stand-in no reader can parse: the facts are whole (owners after
      // known), as a real answer's are, so they are never read again from it.
      return {
        facts: { ownersAfter: [], ...tx.facts, slot: tx.landedAt },
        raw: JSON.stringify({ slot: tx.landedAt }),
      };
    },
    async getSlot() {
      calls.getSlot++;
      return slot;
    },
  };

  return {
    rpc,
    calls,
    /** Puts a transaction on chain at the current slot (plus `delay` slots). */
    land(facts: TransactionFacts, delay = 0) {
      txs.set(facts.signature, { facts, landedAt: slot + delay });
    },
    /** Makes the next `n` status calls fail as a node in trouble would. */
    failNext(n: number) {
      failures = n;
    },
    /** Holds every status call until `release()` is called. */
    hold() {
      let release!: () => void;
      gate = new Promise((resolve) => {
        release = () => {
          gate = null;
          resolve();
        };
      });
      return release;
    },
    get slot() {
      return slot;
    },
  };
}

/**
 * A JSON-RPC node over HTTP that answers `getSlot` (a run's preflight, the ledger's finality) at
 * slot 1000 and `getSignaturesForAddress` with no history, and leaves every other call
 * unanswered, so a run that needs more waits on it.
 */
export async function slotOnlyNode(): Promise<{ url: string; server: Server; close(): void }> {
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => {
      body += chunk;
    });
    req.on("end", () => {
      const call = JSON.parse(body) as { id: number; method: string };
      // A listing of no history lets a nightly run's escrow scan, which comes before its jobs,
      // through to them.
      const result = { getSlot: 1000, getSignaturesForAddress: [] }[call.method];
      if (result === undefined) return;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ jsonrpc: "2.0", id: call.id, result }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}
