// Preloaded into a CLI process (NODE_OPTIONS=--import): holds its start for SLOW_START_MS, as a
// host busy with other work (the service beside the nightly, its imports, its reports) does.
// The line on stderr once the hold ends lets a test time the run from there.
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(process.env.SLOW_START_MS));
process.stderr.write("slow start: held\n");
