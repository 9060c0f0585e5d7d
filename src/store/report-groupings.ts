/** How a report groups its rows (apart from the store's SQL: `--help` lists them). */
export const reportGroupings = ["day", "model", "worker", "key"] as const;
export type ReportGrouping = (typeof reportGroupings)[number];
