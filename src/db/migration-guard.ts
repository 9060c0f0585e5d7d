import { readFileSync } from "node:fs";
import { join } from "node:path";

/**
 * The newest migration of each dialect this build was made with. A migrations folder holding
 * newer ones belongs to newer code (a `git pull` not followed by `npm run build`): applied by
 * this build, they left the database on a schema its statements no longer fit, and every
 * command failed. test/migration-guard.test.ts keeps these equal to the journals' last entries.
 */
export const LATEST_MIGRATION = { sqlite: "0016_memo_job", postgres: "0008_memo_job" } as const;

interface JournalEntry {
  tag: string;
  when: number;
}

/**
 * Checks that `folder` holds no migration newer than `latestTag`, and returns the time of
 * `latestTag` (drizzle's `folderMillis`, what the database records of each migration applied).
 */
export function latestKnownMillis(folder: string, latestTag: string): number {
  const journal = JSON.parse(readFileSync(join(folder, "meta", "_journal.json"), "utf8")) as {
    entries: JournalEntry[];
  };
  const latest = journal.entries.find((e) => e.tag === latestTag);
  if (latest === undefined) {
    throw new Error(
      `${folder} does not hold migration ${latestTag}, which this build was made with: it belongs to another version; nothing was applied`,
    );
  }
  const newer = journal.entries.filter((e) => e.when > latest.when).map((e) => e.tag);
  if (newer.length > 0) {
    throw new Error(
      `${folder} holds ${newer.join(", ")}, newer than this build (its migrations end at ${latestTag}): build it again (npm run build) before running it; nothing was applied`,
    );
  }
  return latest.when;
}

/**
 * Refuses a database on which a newer version applied migrations this build does not know:
 * its writes would fail on the newer schema. Run the newer version instead.
 */
export function refuseNewerDatabase(
  lastAppliedMillis: number | undefined,
  latestMillis: number,
  latestTag: string,
): void {
  if (lastAppliedMillis !== undefined && lastAppliedMillis > latestMillis) {
    throw new Error(
      `the database was upgraded by a newer version (its migrations go past ${latestTag}, the last this build knows): run that version; nothing was applied`,
    );
  }
}
