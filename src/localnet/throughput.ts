import { modelCatalog } from "./models.js";

/**
 * Measures how many non-streamed jobs per second a Decentral API (the simulator, or anything
 * compatible) completes, firing `concurrency` requests at a time until `jobs` are done.
 */
export async function measureJobThroughput(input: {
  baseUrl: string;
  apiKeys: readonly string[];
  jobs: number;
  concurrency: number;
}): Promise<{ jobs: number; failures: number; seconds: number; jobsPerSecond: number }> {
  let next = 0;
  let failures = 0;
  const started = performance.now();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= input.jobs) return;
      const model = modelCatalog[i % modelCatalog.length]!.id;
      const response = await fetch(`${input.baseUrl}/chat/completions`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${input.apiKeys[i % input.apiKeys.length]}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({ model, messages: [{ role: "user", content: `question ${i}` }] }),
      });
      await response.arrayBuffer();
      if (!response.ok) failures++;
    }
  };
  await Promise.all(Array.from({ length: input.concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  return { jobs: input.jobs, failures, seconds, jobsPerSecond: input.jobs / seconds };
}
