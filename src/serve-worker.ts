import { runWorker } from "./serve-cluster.js";

/** Entry point of a worker process of `serve --workers N` (forked by the primary). */
runWorker();
