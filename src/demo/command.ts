import { dirname, join } from "node:path";
import type { Command } from "commander";
import { parseDatabaseUrl } from "../db/url.js";
import {
  type DemoFlags,
  defaultDemoOptions,
  demoOptionsFromFlags,
  MIN_DEMO_JOBS,
} from "./options.js";

/**
 * The service's log goes to a file beside the database, so the terminal shows the report:
 * `demo.log` in the database file's folder, or in `./data` for PostgreSQL or `:memory:`.
 */
export function demoLogFileFor(db: string): string {
  const target = parseDatabaseUrl(db);
  const folder = target.kind === "postgres" || db === ":memory:" ? "./data" : dirname(target.path);
  return join(folder, "demo.log");
}

/** Registers `demo` on the program. */
export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description(
      "run the local chain, the Decentral simulator and decentral-audit, send traffic through the proxy, verify it and print the report",
    )
    .option("--once", "exit after the report (exit code 0 when everything is as expected)")
    .option(
      "--jobs <n>",
      `requests to send, at least ${MIN_DEMO_JOBS} (default ${defaultDemoOptions.jobs})`,
    )
    .option(
      "--port <port>",
      `port of the decentral-audit API; 0 picks a free port (default ${defaultDemoOptions.port})`,
    )
    .option(
      "--db <path>",
      `SQLite file or postgres:// URL (default ${defaultDemoOptions.db}); the report covers this run only`,
    )
    .action(async (flags: DemoFlags) => {
      const options = demoOptionsFromFlags(flags);
      const logFile = demoLogFileFor(options.db);
      // The logger loads with the demo: `--help` and the other commands never pay for it.
      const [{ pino }, { createLogger }] = await Promise.all([import("pino"), import("../log.js")]);
      const log = createLogger(
        {},
        pino.destination({ dest: logFile, sync: true, mkdir: true, append: false }),
      );
      let shown = "";
      const status = (line: string) => {
        if (line === shown) return;
        shown = line;
        process.stderr.write(`\r\x1b[K${line}`);
      };
      const controller = new AbortController();
      const stop = () => controller.abort();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      // The local chain, the simulator and the OpenAI SDK load only when the demo runs.
      const { runDemo } = await import("./run-demo.js");
      const code = await runDemo(
        options,
        {
          out: (line) => console.log(line),
          ...(process.stderr.isTTY ? { status } : {}),
          log,
          logFile,
        },
        controller.signal,
      );
      process.exit(code);
    });
}
