import { withoutUrlSecrets } from "../chain/url-secrets.js";
import { messageOf } from "../errors.js";
import { writeFileWhole } from "../file-output.js";

/**
 * `verify --json`'s answer when the run could not start (a flag refused, no such database, a
 * profile not found): a caller parsing stdout got an empty string where the RPC being down gave
 * an object. The same outcome, exit code and reason, with no counts: none were read.
 */
export function notStartedToJson(reason: string): string {
  const said = withoutUrlSecrets(reason);
  return `${JSON.stringify(
    { headline: `could not start: ${said}`, outcome: "incomplete", exitCode: 2, reason: said },
    null,
    2,
  )}\n`;
}

/**
 * Says a run that failed before its summary where the summary would have gone: `--json` on
 * stdout prints `notStartedToJson` (the error itself is said on stderr as for every command),
 * and `--out FILE` gets that JSON, or a line of text or Markdown, in place of the summary: the
 * file kept the last run's, and a cron job reading it took a night that never ran for a clean
 * one. A file that cannot be written (the error may be that very file) is left: stderr says why.
 */
export function sayNotStartedAsJson(
  flags: { json?: boolean; markdown?: boolean; out?: string },
  error: unknown,
  out: (text: string) => void = (text) => process.stdout.write(text),
): void {
  const reason = messageOf(error).replace(/^error: /, "");
  const file = flags.out?.trim() ? flags.out : undefined;
  if (file !== undefined && file !== "-") {
    const said = withoutUrlSecrets(reason);
    const text = flags.json
      ? notStartedToJson(reason)
      : flags.markdown
        ? `### \u26a0\ufe0f Nightly verification: could not start: ${said}\n\nExit code 2.\n`
        : `decentral-audit verify: could not start: ${said}\n  exit code 2\n`;
    try {
      writeFileWhole(file, text);
    } catch {
      // Said on stderr already, with the run's own error.
    }
    return;
  }
  if (!flags.json) return;
  out(notStartedToJson(reason));
}
