/**
 * RPC providers put API keys in the query string (`?api-key=`) or the userinfo of their URLs;
 * anything shown to API users (explorer links, error texts) drops both.
 */
export function withoutUrlSecrets(text: string): string {
  return text.replace(/(https?:\/\/)(?:[^\s/@]*@)?([^\s?#]*)(?:\?[^\s#)"',]*)?/g, "$1$2");
}
