/** Thrown by a store module that has no PostgreSQL implementation yet. */
export function notOnPostgresYet(module: string): Error {
  return new Error(`the ${module} store does not run on PostgreSQL yet`);
}
