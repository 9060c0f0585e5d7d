/**
 * Which block times an endpoint may give. A block time is the one date the chain itself puts on
 * money, and what a node says it is decides which period a movement belongs to and how far a
 * ledger holds every transaction. A node that answers a time beyond what a date can hold (a
 * RangeError in every report that shows it) or one far in the future (a ledger "read through"
 * 2100, so every window up to then looks complete) is wrong about the chain, not the chain wrong.
 * The bounds refuse such absurd answers; they do not judge this machine's clock.
 */

/**
 * Earliest block time accepted (seconds): 2020-01-01 UTC, before Solana's mainnet genesis
 * (2020-03-16). The local world dates its blocks by the machine's clock, so it is after this too.
 */
export const EARLIEST_BLOCK_TIME = Date.UTC(2020, 0, 1) / 1000;

/**
 * How far (seconds) a block time may be ahead of this machine's clock: a day. Generous on
 * purpose: a host clock minutes or hours slow must never make the chain's own times look wrong
 * (a busy vault's ledger stalled, jobs held as errors, good stored times cleared), while a time
 * a day or more ahead, or one no date holds, is still refused. Migration 0020 (PostgreSQL 0012)
 * clears stored times by the same bound.
 */
export const BLOCK_TIME_AHEAD_SECONDS = 86_400;

/**
 * Why a block time (whole seconds) cannot be the chain's, or null when it can: before
 * `EARLIEST_BLOCK_TIME`, or after `nowMs` (this machine's clock) plus `BLOCK_TIME_AHEAD_SECONDS`.
 */
export function implausibleBlockTime(seconds: number, nowMs: number): string | null {
  if (!Number.isSafeInteger(seconds)) return `block time ${seconds} is not a whole number`;
  if (seconds < EARLIEST_BLOCK_TIME) {
    return `block time ${seconds} is before ${new Date(EARLIEST_BLOCK_TIME * 1000).toISOString()}, when no such chain existed`;
  }
  const latest = Math.floor(nowMs / 1000) + BLOCK_TIME_AHEAD_SECONDS;
  if (seconds > latest) {
    // Either side may be wrong: the endpoint's answer, or this machine's clock (a day slow).
    return `block time ${seconds} is more than a day (${BLOCK_TIME_AHEAD_SECONDS} s) after this machine's clock (${new Date(nowMs).toISOString()}): the endpoint's answer or this machine's clock is wrong`;
  }
  return null;
}
