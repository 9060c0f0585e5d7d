import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * vitest globalSetup: every file, database and child process a test run creates under the
 * system temp directory goes into one directory of this run, removed when the run ends. The
 * test files' forks and the processes they start inherit `TMPDIR`, so `os.tmpdir()` answers
 * this directory everywhere. `KEEP_TEST_TMP=1` keeps it for looking at after a failure.
 */
let root: string | undefined;

/** Set while a run's directory exists: each project of the run sets this up, the first makes it. */
const MADE = "DECENTRAL_AUDIT_TEST_TMP_ROOT";

export function setup(): void {
  if (process.env[MADE] !== undefined) return;
  root = mkdtempSync(join(tmpdir(), "decentral-audit-test-"));
  // Open to every user like /tmp itself: the embedded PostgreSQL runs as its own user and
  // reads files its launcher writes here.
  chmodSync(root, 0o1777);
  process.env.TMPDIR = root;
  process.env[MADE] = root;
}

export function teardown(): void {
  if (root === undefined) return;
  delete process.env[MADE];
  if (process.env.KEEP_TEST_TMP === "1") return;
  rmSync(root, { recursive: true, force: true });
}
