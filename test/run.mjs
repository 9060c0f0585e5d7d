#!/usr/bin/env node
// `npm test`: the type check and the test suite side by side. The type check is about 25 s of
// one core and the suite leaves the cores idle a fifth of its time, so running the two one after
// the other cost the whole type check in wall time. Type errors print as soon as the check ends
// (with a line saying the run will fail), again under the suite's summary, and fail the run; the
// suite runs to its end either way. Arguments go to `vitest run` (`npm test -- test/a.test.ts`).
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
const tscBin = require.resolve("typescript/bin/tsc");
// vitest's exports name no bin; its package.json does.
const vitestPackage = require.resolve("vitest/package.json");
const vitestBin = join(dirname(vitestPackage), require(vitestPackage).bin.vitest);

/** Runs a command to its exit; its output kept when `capture`, else passed through. */
function run(args, { capture }) {
  const child = spawn(process.execPath, args, { stdio: capture ? "pipe" : "inherit" });
  let output = "";
  if (capture) {
    child.stdout.setEncoding("utf8").on("data", (chunk) => (output += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk) => (output += chunk));
  }
  const exit = new Promise((resolve) => {
    child.on("error", (error) => resolve({ code: 1, output: `${output}${error.message}\n` }));
    child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 1 : 0), output }));
  });
  return { child, exit };
}

const typecheck = run([tscBin, "--noEmit", "-p", "."], { capture: true });
const suite = run([vitestBin, "run", ...process.argv.slice(2)], { capture: false });

// A terminal's Ctrl-C reaches both children already (one process group); a SIGTERM sent to
// this process alone (a CI runner's cancel) is passed on so that vitest stops its own.
for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"]) {
  process.on(signal, () => {
    suite.child.kill(signal);
    typecheck.child.kill(signal);
  });
}

let suiteEnded = false;
const tested = suite.exit.then((result) => {
  suiteEnded = true;
  return result;
});
const checked = await typecheck.exit;
if (checked.code !== 0 && !suiteEnded) {
  process.stderr.write(
    `\nType check failed (tsc --noEmit exited ${checked.code}); the tests go on, the run will fail:\n${checked.output}\n`,
  );
}
const { code } = await tested;
if (checked.code !== 0) {
  process.stderr.write(`\nType check failed (tsc --noEmit):\n${checked.output}\n`);
}
process.exit(checked.code !== 0 ? checked.code : code);
