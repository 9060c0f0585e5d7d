/** Key of a (job, signature) pair in the set `SignatureStore.namesAny` returns. */
export const pairKey = (jobId: string, signature: string) => `${jobId}\u0000${signature}`;
