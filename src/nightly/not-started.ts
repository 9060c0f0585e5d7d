import { withoutUrlSecrets } from "../chain/url-secrets.js";
import { messageOf } from "../errors.js";

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
 * Prints `notStartedToJson` on stdout for a `--json` run that failed before its summary (the
 * error itself is said on stderr as for every command). Not with `--out FILE`: that file is
 * written only with a summary.
 */
export function sayNotStartedAsJson(
  flags: { json?: boolean; out?: string },
  error: unknown,
  out: (text: string) => void = (text) => process.stdout.write(text),
): void {
  if (!flags.json || (flags.out !== undefined && flags.out !== "-")) return;
  out(notStartedToJson(messageOf(error).replace(/^error: /, "")));
}
