import { readFileSync } from "node:fs";
import { join } from "node:path";

/**
 * The newest migration of each dialect a build in dist/ was made with, written there by `npm
 * run build`. A migrations folder holding newer ones belongs to newer code (a `git pull` not
 * followed by a build): applied by this build, they left the database on a schema its
 * statements no longer fit, and every command failed. Run from source there is no such file:
 * the code and its migrations are one checkout, and the folder's newest migration is the known
 * one.
 */
function builtWith(): Partial<Record<Dialect, string>> {
  try {
    return JSON.parse(readFileSync(new URL("../migrations-built.json", import.meta.url), "utf8"));
  } catch {
    return {};
  }
}

type Dialect = "sqlite" | "postgres";

interface JournalEntry {
  tag: string;
  when: number;
}

/**
 * The newest migration of `dialect` this code knows, and its time (drizzle's `folderMillis`,
 * what the database records of each migration applied), after checking that `folder` holds
 * none newer. `latestTag` stands in for what the build recorded (tests).
 */
export function latestKnown(
  folder: string,
  dialect: Dialect,
  latestTag: string | undefined = builtWith()[dialect],
): { tag: string; millis: number } {
  const journal = JSON.parse(readFileSync(join(folder, "meta", "_journal.json"), "utf8")) as {
    entries: JournalEntry[];
  };
  if (latestTag === undefined) {
    const last = journal.entries.at(-1);
    return { tag: last?.tag ?? "none", millis: last?.when ?? 0 };
  }
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
  return { tag: latestTag, millis: latest.when };
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
