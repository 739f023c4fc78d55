/** Where the bearer token comes from: one resolver for the client, the provider and the viewer's controller. */

/** A token, or a function asked for a fresh one before every connection attempt (tokens expire). */
export type TokenSource = string | (() => string | null | undefined | Promise<string | null | undefined>);

/** The token `source` gives now: the string itself, or what the function returns (or resolves to). */
export async function resolveToken(source: TokenSource | undefined): Promise<string | null | undefined> {
  return typeof source === 'function' ? await source() : source;
}

/**
 * A source that calls `read` (e.g. `() => element.token`) at every connection attempt, so a new token needs no
 * reconnect. Undefined when `read` gives none now: whether there is a token picks the endpoint, so a change
 * between none and some needs a new client anyway.
 */
export function liveToken(read: () => TokenSource | undefined): TokenSource | undefined {
  return read() === undefined ? undefined : () => resolveToken(read());
}
