import { isatty } from "node:tty";

/** Which of stdin, stdout and stderr were terminals when this process started. */
const startedOnTerminal = [0, 1, 2].map((fd) => isatty(fd));

/**
 * Ends this process with `code` once it has drained. When a terminal it started on has hung up
 * since (the window or the ssh session serve ran in closed: SIGHUP), it ends by that hangup
 * instead: Node's exit puts back the settings of the terminal it started on, which fails an
 * assertion on one that hung up, and the process died by SIGABRT or SIGSEGV, dumping core,
 * after a drain that went well.
 */
export function exitAfterDrain(code: number): never {
  if (startedOnTerminal.some((was, fd) => was && !isatty(fd))) {
    // With no listener left, SIGHUP takes its default action: the process ends at once.
    process.removeAllListeners("SIGHUP");
    process.kill(process.pid, "SIGHUP");
  }
  return process.exit(code);
}
