import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import type { Config } from "../config.js";
import { openStore } from "../db/client.js";
import { migrateStore } from "../db/migrate.js";
import { AppError } from "../errors.js";
import { parseInstant } from "./period.js";
import {
  type GroupBy,
  groupByValues,
  reconciliationReport,
  reconciliationToCsv,
  reconciliationToJson,
} from "./reconciliation.js";

type Helpers = {
  withDatabaseOption(command: Command): Command;
  configFromFlags(flags: Record<string, unknown>): Config;
};

/** `--from`/`--to` of the report command; a bad value is an AppError naming the flag. */
function instantFlag(name: string, value: string): number {
  const ms = parseInstant(value);
  if (ms === null) {
    throw new AppError(
      "validation_failed",
      `--${name}: not a date or ISO 8601 date-time: ${value}`,
      {
        field: name,
      },
    );
  }
  return ms;
}

/** Registers `report reconciliation`. */
export function registerReportCommands(program: Command, helpers: Helpers): void {
  const report = program.command("report").description("reports");
  helpers
    .withDatabaseOption(
      report
        .command("reconciliation")
        .description("money in and out per day, model, worker or key for a period (UTC)")
        .requiredOption("--from <instant>", "start, inclusive (YYYY-MM-DD or ISO 8601)")
        .requiredOption("--to <instant>", "end, exclusive (YYYY-MM-DD or ISO 8601)")
        .option("--group-by <group>", `one of ${groupByValues.join(", ")}`, "day")
        .option("--format <format>", "csv or json", "json")
        .option("--out <file>", "write to a file instead of stdout"),
    )
    .action(
      (flags: { from: string; to: string; groupBy: string; format: string; out?: string }) => {
        const from = instantFlag("from", flags.from);
        const to = instantFlag("to", flags.to);
        if (to <= from) {
          throw new AppError("validation_failed", "--to: must be after --from", { field: "to" });
        }
        if (!groupByValues.includes(flags.groupBy as GroupBy)) {
          throw new AppError(
            "validation_failed",
            `--group-by: one of ${groupByValues.join(", ")}`,
            {
              field: "group-by",
            },
          );
        }
        if (flags.format !== "csv" && flags.format !== "json") {
          throw new AppError("validation_failed", "--format: csv or json", { field: "format" });
        }
        const store = openStore(helpers.configFromFlags(flags).DATABASE_URL);
        let text: string;
        try {
          migrateStore(store);
          const result = reconciliationReport(store, {
            from,
            to,
            groupBy: flags.groupBy as GroupBy,
          });
          text =
            flags.format === "csv"
              ? reconciliationToCsv(result)
              : `${JSON.stringify(reconciliationToJson(result), null, 2)}\n`;
        } finally {
          store.close();
        }
        if (flags.out) writeFileSync(flags.out, text);
        else process.stdout.write(text);
      },
    );
}
