import { configDefaults, defineConfig } from "vitest/config";
import { LongestFirstSequencer } from "./test/support/longest-first-sequencer.js";
import { sharedImportFiles } from "./test/support/shared-import-files.js";
import { SummaryLineReporter } from "./test/support/summary-line-reporter.js";

// One temp directory per run, removed at its end; one PostgreSQL server per run, and one
// compiled build of the program for the tests that start it, each only when a test file
// needs it.
const tempRoot = "./test/support/temp-root-global-setup.ts";
const postgres = "./test/support/postgres-global-setup.ts";

export default defineConfig({
  test: {
    // Native modules (better-sqlite3, litesvm) are safest in child processes.
    pool: "forks",
    // Four files at once even on 2 cores (vitest's default there is one): the files spend much
    // of their time waiting on child processes, the chain's slots and timers (with two, the cores
    // sat idle 45% of a run by /proc/stat; with three, 21%). Three took the suite from 706-773 s
    // to 623-634 s, four from 533 to 493-514 s on a faster host. Four at once first found two
    // tests that depended on the host's load (fixed: test/verify-adversarial-one-slot.test.ts,
    // test/loop-delay.test.ts), as three once found serve's logger leaving a line unwritten
    // (src/serve-log.ts). Set here, not by `--maxWorkers`: the projects below take the value
    // from this file, and the flag alone leaves them at it.
    maxWorkers: 4,
    // The longest files first, so that no long file starts while the other worker runs out.
    sequence: { sequencer: LongestFirstSequencer },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default", new SummaryLineReporter()],
    projects: [
      {
        extends: true,
        test: {
          name: "isolated",
          include: ["test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, ...sharedImportFiles],
          globalSetup: [tempRoot, postgres, "./test/support/compiled-cli-global-setup.ts"],
          // Worker threads a test starts in its own process run the build made above.
          setupFiles: ["./test/support/compiled-threads.ts"],
        },
      },
      {
        extends: true,
        // Files that start no process and patch nothing shared (test/support/
        // shared-import-files.ts): a worker imports the program's modules once for all of them,
        // and fails a file that leaves a server listening (a local world it did not close) or
        // a PostgreSQL connection open (test/support/postgres.ts).
        test: {
          name: "shared-imports",
          include: [...sharedImportFiles],
          isolate: false,
          globalSetup: [tempRoot, postgres],
          setupFiles: ["./test/support/shared-imports-servers.ts"],
        },
      },
    ],
  },
});
