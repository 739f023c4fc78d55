/**
 * The client's address behind reverse proxies (`SSE_TRUSTED_PROXIES`): the per-client stream limit and the log
 * lines use it. Only a request whose socket comes from a trusted proxy has its `X-Forwarded-For` believed, and of
 * that list the rightmost address that is not itself a trusted proxy is the client: every proxy appends the
 * address it was reached from, so what a client wrote into the header itself sits to the left of that and is never
 * taken. A request from anywhere else is its socket's address, whatever its headers say.
 */
import type { IncomingMessage } from 'node:http';
import { BlockList, isIP } from 'node:net';

/** Names for address ranges in `SSE_TRUSTED_PROXIES`, beside single addresses and CIDRs. */
const NAMED_RANGES: Record<string, string[]> = {
  loopback: ['127.0.0.0/8', '::1/128'],
  private: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
  linklocal: ['169.254.0.0/16', 'fe80::/10'],
};

/** A parsed `SSE_TRUSTED_PROXIES`: the addresses whose `X-Forwarded-For` is believed. */
export class TrustedProxies {
  readonly #list = new BlockList();
  /** The entries as given, for log lines and errors. */
  readonly entries: readonly string[];

  /**
   * `entries`: addresses (`10.0.0.5`, `::1`), CIDRs (`10.0.0.0/8`, `fd00::/8`) or the names `loopback`, `private`
   * and `linklocal`. Throws a TypeError naming the first entry that is none of these.
   */
  constructor(entries: readonly string[]) {
    this.entries = entries;
    for (const raw of entries) {
      const entry = raw.trim().toLowerCase();
      for (const range of NAMED_RANGES[entry] ?? [entry]) this.#add(range, raw);
    }
  }

  /** Parses a comma-separated list (the environment variable's form); an empty list trusts nobody. */
  static parse(list: string): TrustedProxies {
    return new TrustedProxies(list.split(',').map((entry) => entry.trim()).filter(Boolean));
  }

  #add(range: string, raw: string): void {
    const [address = '', bits, ...rest] = range.split('/');
    const family = isIP(address);
    const bad = (why: string) => new TypeError(`"${raw}" is not an address or CIDR (${why}); use e.g. 10.0.0.5, 10.0.0.0/8, fd00::/8, loopback or private`);
    if (family === 0 || rest.length > 0) throw bad('not an IPv4 or IPv6 address');
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) return this.#list.addAddress(address, type);
    const prefix = Number(bits);
    if (!/^\d{1,3}$/.test(bits) || prefix > (family === 4 ? 32 : 128)) throw bad(`the prefix length must be 0-${family === 4 ? 32 : 128}`);
    this.#list.addSubnet(address, prefix, type);
  }

  get size(): number {
    return this.entries.length;
  }

  /** Whether `address` (as a socket or `X-Forwarded-For` names it) is a trusted proxy. */
  trusts(address: string): boolean {
    const plain = normalise(address);
    if (plain === undefined) return false;
    return this.#list.check(plain, isIP(plain) === 4 ? 'ipv4' : 'ipv6');
  }
}

/**
 * An address as a socket or a proxy writes it, in the form the limit counts: an IPv4-mapped IPv6 address
 * (`::ffff:10.0.0.5`, a dual-stack socket) as its IPv4 form, brackets, ports and an IPv6 zone removed.
 * Undefined when it is no address at all.
 */
export function normalise(address: string): string | undefined {
  let value = address.trim();
  // `[v6]:port` or `[v6]`, and `v4:port` (some proxies add the port).
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(value);
  if (bracketed) value = bracketed[1]!;
  else if (/^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(value)) value = value.slice(0, value.lastIndexOf(':'));
  value = value.replace(/%.*$/, '').toLowerCase();
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(value);
  if (mapped) value = mapped[1]!;
  return isIP(value) === 0 ? undefined : value;
}

/**
 * The address a request comes from: its socket's, or, when the socket is a trusted proxy's, the rightmost address
 * of `X-Forwarded-For` (all its headers, in order) that is not a trusted proxy. When every listed address is
 * trusted, the leftmost; when an entry is not an address, the trusted hop that passed it on (a proxy's header is
 * believed only as far as it makes sense).
 */
export function clientAddress(req: IncomingMessage, trusted: TrustedProxies | undefined): string {
  const socketAddress = req.socket.remoteAddress ?? '';
  const remote = normalise(socketAddress) ?? socketAddress;
  if (!trusted || trusted.size === 0 || !trusted.trusts(remote)) return remote;
  const header = req.headers['x-forwarded-for'];
  if (header === undefined) return remote;
  const hops = (Array.isArray(header) ? header.join(',') : header).split(',');
  let nearest = remote;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = normalise(hops[i]!);
    if (hop === undefined) return nearest;
    if (!trusted.trusts(hop)) return hop;
    nearest = hop;
  }
  return nearest;
}

const TRUSTED = Symbol('ai-story-sse trusted proxies');
type Marked = IncomingMessage & { [TRUSTED]?: TrustedProxies };

/**
 * A polka middleware that marks each request with the trusted proxies, so the routes' {@link clientAddressOf}
 * finds them without each route taking the option. It only marks: nothing is read or answered here.
 */
export function markTrustedProxies(trusted: TrustedProxies | undefined) {
  return (req: IncomingMessage, _res: unknown, next: () => void): void => {
    if (trusted) (req as Marked)[TRUSTED] = trusted;
    next();
  };
}

/** The client address of a request that went through {@link markTrustedProxies} (else its socket's). */
export function clientAddressOf(req: IncomingMessage): string {
  return clientAddress(req, (req as Marked)[TRUSTED]);
}
