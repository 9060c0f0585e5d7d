import { type DestinationStream, type Logger, pino } from "pino";
import { redactCensor } from "./recorder/without-key.js";

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

/** What a redacted value is printed as. */
export { redactCensor };

/** Options of `createLogger`; every one has a default. */
export interface LoggerOptions {
  /** pino level. Default `info`. */
  level?: string;
  /** Default `decentral-audit`. */
  name?: string;
  /** Called after each line is handed to the destination, with its message. Default none. */
  afterLine?: (message: string | undefined) => void;
}

/** JSON-lines logger with secrets redacted. Pass a destination in tests to capture lines. */
export function createLogger(options: LoggerOptions = {}, destination?: DestinationStream): Logger {
  const { afterLine } = options;
  return pino(
    {
      level: options.level ?? "info",
      name: options.name ?? "decentral-audit",
      redact: { paths: redactPaths, censor: redactCensor },
      ...(afterLine
        ? {
            hooks: {
              logMethod(args, method) {
                method.apply(this, args);
                const [first, second] = args as unknown[];
                afterLine(typeof first === "string" ? first : (second as string | undefined));
              },
            },
          }
        : {}),
    },
    destination,
  );
}

/** The raw stream of `log` (pino's destination), and a push to write what it gathered. */
export function rawLineWriter(log: Logger): (line: string) => void {
  const stream = (log as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as
    | { write(line: string): unknown; flush?: () => unknown }
    | undefined;
  return (line) => {
    if (!stream) return;
    stream.write(line);
    try {
      stream.flush?.();
    } catch {
      // A destination closed at exit: the line is dropped.
    }
  };
}
