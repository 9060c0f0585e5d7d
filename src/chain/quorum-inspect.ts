import { type Config, quorumRefusal } from "../config.js";
import { AppError } from "../errors.js";
import { inspectionPool, isValidSignature, notASignature } from "./inspect.js";
import { createQuorumRpc, type EndpointAnswer } from "./quorum.js";
import { endpointNames } from "./url-secrets.js";

/** What `tx inspect SIGNATURE --quorum k` prints. */
export interface QuorumInspection {
  signature: string;
  quorum: number;
  /** True when at least `quorum` endpoints answered identical facts (or all "not found"). */
  agreed: boolean;
  /** Digest of the agreed facts; null when none agreed or they agreed it is not found. */
  digest: string | null;
  endpoints: (EndpointAnswer & { agrees: boolean })[];
}

/**
 * Asks every endpoint of `SOLANA_RPC_URLS` for one transaction and compares the digests of the
 * parsed facts, as the verifier's quorum does; nothing is cut short, so every answer is shown.
 */
export async function inspectWithQuorum(
  signature: string,
  options: { config: Config; quorum: number; commitment?: "confirmed" | "finalized" },
): Promise<QuorumInspection> {
  const urls = options.config.SOLANA_RPC_URLS;
  if (!isValidSignature(signature)) throw notASignature(signature);
  if (!Number.isInteger(options.quorum) || options.quorum < 2 || options.quorum > urls.length) {
    throw new AppError(
      "validation_failed",
      `--quorum: expected an integer from 2 to the number of RPC URLs (${urls.length})`,
      { field: "quorum" },
    );
  }
  const refusal = quorumRefusal(urls, options.quorum);
  if (refusal !== null)
    throw new AppError("validation_failed", `--rpc: ${refusal}`, { field: "rpc" });
  const names = endpointNames(urls);
  const rpc = createQuorumRpc({
    quorum: options.quorum,
    members: urls.map((url, i) => ({ name: names[i]!, rpc: inspectionPool(options.config, url) })),
  });
  try {
    const result = await rpc.inspect(signature, options.commitment ?? "finalized");
    const winning = result.agreed ? (result.digest ?? "not_found") : null;
    return {
      signature,
      quorum: result.quorum,
      agreed: result.agreed,
      digest: result.digest,
      endpoints: result.answers.map((a) => ({
        ...a,
        agrees: winning !== null && (a.kind === "not_found" ? "not_found" : a.digest) === winning,
      })),
    };
  } finally {
    await rpc.close();
  }
}
