import { readFileSync } from "node:fs";

/**
 * Sums a V8 CPU profile (`.cpuprofile`) of a bench child, to see where a request's CPU goes:
 *
 *   BENCH_CHILD_NODE_OPTIONS="--cpu-prof --cpu-prof-dir=/tmp/prof" VERIFY_POLL_MS=600000 \
 *     npm run bench -- --only proxy --proxy-quick --proxy-workers 1
 *   node --import tsx bench/profile-summary.ts /tmp/prof/CPU.<...>.<pid>.0.001.cpuprofile [skipS]
 *
 * (VERIFY_POLL_MS keeps the verifier idle, so what is left is the request path.) It prints the
 * busy time (idle left out) after the first `skipS` seconds (default 5: module loading), the
 * functions by self time, and the busy time by the outermost frame of src/ or bench/ code on
 * the stack: the callback of the service that a stretch of work ran for (a response's end, the
 * receipt writer's group commit, the jobs API batch); work with no such frame (Node's HTTP
 * parsing and socket writes) is named by the Node function under the event loop. Under tsx a
 * module is compiled to one line: `file:1:col` is a column of that line.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

const [file, skipText = "5"] = process.argv.slice(2);
if (file === undefined) {
  process.stderr.write("usage: profile-summary.ts <file.cpuprofile> [skip seconds]\n");
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const skipUs = Number(skipText) * 1e6;
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const name = (n: ProfileNode) => {
  const f = n.callFrame;
  const where =
    f.url === "" ? "" : ` ${f.url.split("/").pop()}:${f.lineNumber + 1}:${f.columnNumber}`;
  return `${f.functionName || "(anonymous)"}${where}`;
};
const isOwn = (n: ProfileNode) => /\/(src|bench)\//.test(n.callFrame.url);
const idle = new Set(["(idle)", "(program)"]);

const self = new Map<string, number>();
const entry = new Map<string, number>();
let busy = 0;
let at = profile.startTime;
profile.samples.forEach((id, i) => {
  const delta = profile.timeDeltas[i] ?? 0;
  at += delta;
  const leaf = nodes.get(id);
  if (leaf === undefined || at - profile.startTime < skipUs) return;
  if (idle.has(leaf.callFrame.functionName)) return;
  busy += delta;
  self.set(name(leaf), (self.get(name(leaf)) ?? 0) + delta);
  const stack: ProfileNode[] = [];
  for (let n: ProfileNode | undefined = leaf; n; n = nodes.get(parent.get(n.id) ?? -1)) {
    stack.unshift(n);
  }
  // stack[0] is (root); stack[1] the function the event loop called.
  const own = stack.find(isOwn);
  const key = own ? name(own) : `(no src frame) ${stack[1] ? name(stack[1]) : ""}`;
  entry.set(key, (entry.get(key) ?? 0) + delta);
});

const lines = [`busy ${(busy / 1000).toFixed(1)} ms after the first ${skipText} s`];
const show = (title: string, sums: Map<string, number>, count: number) => {
  lines.push("", title);
  for (const [key, us] of [...sums].sort((a, b) => b[1] - a[1]).slice(0, count)) {
    const share = ((100 * us) / busy).toFixed(1).padStart(5);
    lines.push(`${(us / 1000).toFixed(1).padStart(9)} ms ${share}%  ${key}`);
  }
};
show("by self time", self, 40);
show("by the outermost src/ or bench/ frame", entry, 40);
// One write: a reader that stops early (`| head`) ends it without an EPIPE stack.
process.stdout.on("error", () => process.exit(0));
process.stdout.write(`${lines.join("\n")}\n`);
