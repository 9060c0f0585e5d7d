import { readFileSync } from "node:fs";

/**
 * Peak resident set size of this process, in bytes: VmHWM of /proc/self/status on Linux.
 * Not `process.resourceUsage().maxRSS`: Linux carries the high-water mark of the process image
 * an exec replaces into the new one, and a child forks from the benchmark process before it
 * execs node, so a child's maxRSS is at least the benchmark's own RSS at the fork (a child
 * forked by a 470 MB parent reported 411 MB; the same child from an 80 MB parent, 143 MB).
 * VmHWM belongs to the child's own address space. Elsewhere, maxRSS is all there is.
 */
export function peakRssBytes(): number {
  try {
    const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync("/proc/self/status", "utf8"));
    if (hwm) return Number(hwm[1]) * 1024;
  } catch {
    // Not Linux: fall through.
  }
  return process.resourceUsage().maxRSS * 1024;
}
