/** The codings of a `content-encoding` header, as applied (none for identity). */
export function codingsOf(encoding: string | undefined): string[] {
  return (encoding ?? "")
    .split(",")
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== "" && c !== "identity");
}
