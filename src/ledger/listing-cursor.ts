/**
 * Why a page listed below `before` moves the listing on nowhere, or null when it does: it holds
 * `before` itself (a node that ignores the cursor), or only entries `listed` already above it.
 */
export function cursorGoesNowhere(
  page: readonly { signature: string }[],
  before: string,
  listed: ReadonlySet<string>,
): string | null {
  if (page.some((e) => e.signature === before)) return `listed ${before} again below itself`;
  if (page.length > 0 && page.every((e) => listed.has(e.signature))) {
    return `listed ${page.length} entries again below ${before}, all of them listed above it already`;
  }
  return null;
}
