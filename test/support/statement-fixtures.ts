import type { Statement } from "../../src/ledger/statement.js";

/** A statement of one vault with one unreceipted debit whose memo the operator wrote. */
export function statementWithMemo(
  memoJobId: string,
  opts: { ownerChangedUnderMemo?: boolean } = {},
): Statement {
  const vault = "F11Zd87fGZBi1tD6uYQyPQ2JCmaG3e7RcDmrm3eJucpB";
  return {
    from: 0,
    to: 1_000_000,
    generatedAt: 1_000_000,
    vaults: [
      {
        vault,
        keys: [],
        readThrough: null,
        historyRead: true,
        complete: true,
        openingUnits: 10_000n,
        depositsUnits: 0n,
        locksUnits: 0n,
        returnsUnits: 0n,
        unexplainedOutUnits: 1000n,
        netSpendUnits: 1000n,
        closingByLedgerUnits: 9000n,
        closingOnChainUnits: 9000n,
        closingOnChainSource: "balance_read",
        differenceUnits: 0n,
        counts: {
          lines: 1,
          deposits: 0,
          locks: 0,
          returns: 0,
          unexplained: 1,
          unreleasedLocks: 0,
          locksNotDue: 0,
          creditsHeaderMismatches: 0,
          creditsHeaderUndecided: 0,
          pending: 0,
          noMovement: 0,
        },
        unexplained: [
          {
            finding: "unreceipted_debit",
            signature: "4F7xDcUqtjakRjqtCoUtS8fH3TYtDUFjo6qMbetmX4W5",
            slot: 7,
            blockTime: 500,
            amountUnits: -1000n,
            kind: "unexplained",
            jobId: null,
            memo: `decentral:escrow:${memoJobId}`,
            memoJobId,
          },
        ],
        unreleasedLocks: [],
        locksNotDue: [],
        creditsHeaderMismatches: [],
        creditsHeaderUndecided: [],
        foreignMint: [],
        ownerChanges: opts.ownerChangedUnderMemo
          ? [
              {
                finding: "vault_owner_changed",
                signature: "5VfYmGBjvxKjKjuxV7XUtwT2U9YwAZRMdf3XWZRYWpP2",
                slot: 8,
                blockTime: 600,
                owner: "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
                memo: `decentral:escrow:${memoJobId}`,
                memoJobId,
              },
            ]
          : [],
        delegateApprovals: [],
        mixedMemos: [],
        setAside: [],
        gaps: [],
        accountSnapshot: null,
      },
    ],
  } as unknown as Statement;
}
