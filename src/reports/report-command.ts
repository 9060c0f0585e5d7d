import type { Command } from "commander";
import type { Config } from "../config.js";
import { AppError } from "../errors.js";
import { outFile, refuseUnwritableOut, writeFileWhole } from "../file-output.js";
import { timeZoneOf, timeZoneRefusal } from "../instant.js";
import { registerStatementCommand } from "../ledger/statement-command.js";
import { reportGroupings as groupByValues } from "../store/report-groupings.js";
import { type WindowFlags, windowFromFlags } from "./period.js";
import type { GroupBy } from "./reconciliation.js";
import type { RollupCheck } from "./rollup-recompute.js";

type Helpers = {
  withDatabaseOption(command: Command): Command;
  configFromFlags(flags: Record<string, unknown>): Config;
};

/** `--time-zone`: the zone as Intl spells it, undefined when not given; an unknown one is refused. */
function timeZoneFlag(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const zone = timeZoneOf(value);
  if (zone === null) {
    throw new AppError("validation_failed", `--time-zone: ${timeZoneRefusal(value)}`, {
      field: "time-zone",
    });
  }
  return zone;
}

/**
 * A period of more days of `--time-zone` than a report groups by (`most`), refused
 * naming the flags that gave the period (`--since`, `--from/--to`), not the API's `to`.
 */
function tooManyZonedDaysFlags(
  flags: WindowFlags,
  timeZone: string | undefined,
  most: number,
): AppError {
  const given = (["since", "window", "from", "to"] as const).filter((f) => flags[f] !== undefined);
  return new AppError(
    "validation_failed",
    `${given.map((f) => `--${f}`).join("/")}: a report by day in --time-zone ${timeZone} groups at most ${most} days; ask for a longer period in parts, or by UTC days (without --time-zone)`,
    { field: given[0] ?? "since" },
  );
}

/** Registers `report reconciliation`. */
export function registerReportCommands(program: Command, helpers: Helpers): void {
  const report = program.command("report").description("reports");
  helpers
    .withDatabaseOption(
      report
        .command("reconciliation")
        .description(
          "money in and out per day, model, worker or key for a period (UTC, or --time-zone's days)",
        )
        .option("--since <duration>", "period of this length ending now, e.g. 24h, 7d")
        .option(
          "--window <name>",
          "yesterday: the previous day, [00:00, 00:00), in UTC or --time-zone",
        )
        .option("--from <instant>", "start, inclusive (YYYY-MM-DD, ISO 8601 or epoch seconds)")
        .option("--to <instant>", "end, exclusive (as --from; default now)")
        // No commander defaults: `--recompute` must tell a flag given from one left out.
        .option("--group-by <group>", `one of ${groupByValues.join(", ")} (default: day)`)
        .option(
          "--time-zone <zone>",
          "IANA time zone (e.g. Europe/London): dates, --window yesterday and --group-by day are its days (default: UTC)",
        )
        .option("--format <format>", "csv or json (default: json; with --recompute, text)")
        .option("--out <file>", "write to a file instead of stdout (- is stdout)")
        .option(
          "--recompute",
          "compare the rollups with the jobs summed from scratch (every day, or the days of the period); exit 1 on any difference",
        ),
    )
    .action(
      async (
        flags: WindowFlags & {
          groupBy?: string;
          timeZone?: string;
          format?: string;
          out?: string;
          recompute?: boolean;
        },
      ) => {
        const timeZone = timeZoneFlag(flags.timeZone);
        if (flags.recompute) {
          await recompute(flags, timeZone);
          return;
        }
        const { from, to } = windowFromFlags(flags, Date.now(), timeZone);
        const groupBy = flags.groupBy ?? "day";
        const format = flags.format ?? "json";
        if (!groupByValues.includes(groupBy as GroupBy)) {
          throw new AppError(
            "validation_failed",
            `--group-by: one of ${groupByValues.join(", ")}`,
            {
              field: "group-by",
            },
          );
        }
        if (format !== "csv" && format !== "json") {
          throw new AppError("validation_failed", "--format: csv or json", { field: "format" });
        }
        const out = outFile(flags.out);
        if (out) refuseUnwritableOut(out);
        // Loaded here, not at the top: `--help` and the other commands never pay for them.
        const [
          { openStore },
          {
            MAX_ZONED_DAYS,
            reconciliationReport,
            reconciliationToCsv,
            reconciliationToJson,
            TooManyZonedDays,
          },
        ] = await Promise.all([import("../db/open.js"), import("./reconciliation.js")]);
        const store = await openStore(helpers.configFromFlags(flags), {
          create: false,
          readOnly: true,
        });
        let text: string;
        try {
          const result = await reconciliationReport(store, {
            from,
            to,
            groupBy: groupBy as GroupBy,
            timeZone,
          });
          text =
            format === "csv"
              ? reconciliationToCsv(result)
              : `${JSON.stringify(reconciliationToJson(result), null, 2)}\n`;
        } catch (error) {
          throw error instanceof TooManyZonedDays
            ? tooManyZonedDaysFlags(flags, timeZone, MAX_ZONED_DAYS)
            : error;
        } finally {
          await store.close();
        }
        if (out) writeFileWhole(out, text);
        else process.stdout.write(text);
      },
    );

  /**
   * `--recompute`: compares every grain at once, so a `--group-by` would be a request it cannot
   * honour (refused, not ignored); `--format` picks JSON or CSV of the differences instead of
   * the text, and a value it does not know is refused, as for the report.
   */
  async function recompute(
    flags: WindowFlags & { groupBy?: string; format?: string; out?: string },
    timeZone: string | undefined,
  ): Promise<void> {
    if (flags.groupBy !== undefined) {
      throw new AppError(
        "validation_failed",
        "--group-by: --recompute compares every grouping (day, hour, model, worker, key) at once; leave --group-by out",
        { field: "group-by" },
      );
    }
    if (flags.format !== undefined && flags.format !== "csv" && flags.format !== "json") {
      throw new AppError("validation_failed", "--format: csv or json", { field: "format" });
    }
    const anyWindow = [flags.since, flags.from, flags.to, flags.window].some(
      (f) => f !== undefined,
    );
    // Every grouping is compared by UTC day whatever the zone: it only reads a period's dates.
    // Without dates to read (no period, or `--since`'s length) it changed nothing, unsaid.
    const datesGiven = [flags.from, flags.to, flags.window].some((f) => f !== undefined);
    if (timeZone !== undefined && !datesGiven) {
      throw new AppError(
        "validation_failed",
        "--time-zone: with --recompute it reads only the dates of --from/--to or --window (every grouping is compared by UTC day); leave --time-zone out",
        { field: "time-zone" },
      );
    }
    const period = anyWindow ? windowFromFlags(flags, Date.now(), timeZone) : {};
    const out = outFile(flags.out);
    if (out) refuseUnwritableOut(out);
    const [
      { openStore },
      { recomputeRollups, rollupCheckToCsv, rollupCheckToJson, rollupCheckToText },
    ] = await Promise.all([import("../db/open.js"), import("./rollup-recompute.js")]);
    const store = await openStore(helpers.configFromFlags(flags), { create: false });
    let check: RollupCheck;
    try {
      check = await recomputeRollups(store, period);
    } finally {
      await store.close();
    }
    const text =
      flags.format === "json"
        ? `${JSON.stringify(rollupCheckToJson(check), null, 2)}\n`
        : flags.format === "csv"
          ? rollupCheckToCsv(check)
          : rollupCheckToText(check);
    if (out) writeFileWhole(out, text);
    else process.stdout.write(text);
    process.exitCode = check.differenceCount > 0 ? 1 : 0;
  }
  registerStatementCommand(report, helpers);
}
