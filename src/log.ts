import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger };

/**
 * Paths pino must never print. The caller's Decentral key travels in `authorization`; tokens
 * of our own API travel the same way.
 */
export const redactPaths = [
  "authorization",
  "apiKey",
  "token",
  "*.authorization",
  "*.apiKey",
  "*.token",
  "req.headers.authorization",
  "headers.authorization",
  "req.headers.cookie",
];

/** JSON-lines logger with secrets redacted. Pass a destination in tests to capture lines. */
export function createLogger(
  options: { level?: string; name?: string } = {},
  destination?: DestinationStream,
): Logger {
  return pino(
    {
      level: options.level ?? "info",
      name: options.name ?? "decentral-audit",
      redact: { paths: redactPaths, censor: "[redacted]" },
    },
    destination,
  );
}
