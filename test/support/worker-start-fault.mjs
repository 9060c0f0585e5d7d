// Preloaded into `serve --workers N` (NODE_OPTIONS=--import): every worker of the cluster (the
// process whose script is serve-worker) fails as it starts, as WORKER_START_FAULT says: `exit`
// ends it with code 1 and a message of its own, `kill` kills it with SIGKILL.
if (/serve-worker\.[jt]s$/.test(process.argv[1] ?? "")) {
  if (process.env.WORKER_START_FAULT === "exit") {
    process.stderr.write("worker start fault: cannot start\n");
    process.exit(1);
  }
  if (process.env.WORKER_START_FAULT === "kill") process.kill(process.pid, "SIGKILL");
}
