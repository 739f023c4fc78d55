/** `REDIS_CLUSTER_NODES`: the startup nodes of a Redis Cluster, and the credentials and TLS they share. */

/** A Redis Cluster to connect to. */
export interface RedisClusterSettings {
  /** Startup nodes: any reachable node is enough, the others are discovered. */
  nodes: readonly { host: string; port: number }[];
  /** ACL user and password of every node. */
  username?: string;
  password?: string;
  /** Connect to every node with TLS. Default false. */
  tls?: boolean;
}

/**
 * Reads `REDIS_CLUSTER_NODES`: comma-separated startup nodes, each `host:port` or a `redis://` / `rediss://` URL.
 * Credentials and TLS of URL entries apply to every node (a cluster has one password). Throws a TypeError
 * that says what is wrong.
 */
export function parseClusterNodes(text: string): RedisClusterSettings {
  const settings: RedisClusterSettings = { nodes: [] };
  const nodes: { host: string; port: number }[] = [];
  for (const entry of text.split(',').map((part) => part.trim()).filter(Boolean)) {
    let url: URL;
    try {
      url = new URL(/^rediss?:\/\//.test(entry) ? entry : `redis://${entry}`);
    } catch {
      throw new TypeError(`"${entry}" is neither host:port nor a redis:// URL`);
    }
    const port = Number(url.port || 6379);
    if (!url.hostname || !Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`"${entry}" has no valid host and port`);
    // URL keeps the brackets of an IPv6 literal; ioredis wants the bare address.
    nodes.push({ host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port });
    if (url.username) settings.username = decodeURIComponent(url.username);
    if (url.password) settings.password = decodeURIComponent(url.password);
    if (url.protocol === 'rediss:') settings.tls = true;
  }
  if (nodes.length === 0) throw new TypeError('lists no node; give host:port[,host:port...]');
  return { ...settings, nodes };
}
