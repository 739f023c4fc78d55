/**
 * The server's packages (ioredis, jose, pino, polka, prom-client, sirv, ws) are optional peer dependencies of
 * ai-story-sse: a front end that installs it for `<sse-stream-viewer>` gets only the client's. The package's
 * server entry points (`ai-story-sse/server`, the `ai-story-sse` command) are small wrappers that
 * scripts/build-lib.mjs writes around the real modules: they call {@link missingPeers} first and load the real
 * module only when nothing is missing, so a missing peer is one error that says what to install, instead of
 * Node's `Cannot find package 'ioredis'` from deep inside the server.
 */

/** A peer dependency: its name and the version range package.json asks for. */
export interface Peer {
  name: string;
  range: string;
}

/** The peers that do not resolve from this package (where its own modules look for them), in the order given. */
export function missingPeers(peers: readonly Peer[]): Peer[] {
  return peers.filter(({ name }) => {
    try {
      import.meta.resolve(name);
      return false;
    } catch {
      return true;
    }
  });
}

/** The npm command that installs `peers` at the ranges package.json asks for (quoted: `^` is special to cmd.exe and zsh). */
export function installCommand(peers: readonly Peer[]): string {
  return `npm install ${peers.map(({ name, range }) => `"${name}@${range}"`).join(' ')}`;
}

/** Thrown by `import 'ai-story-sse/server'` when the server's peer dependencies are not installed. */
export class MissingPeerDependencyError extends Error {
  override name = 'MissingPeerDependencyError';
  readonly code = 'ERR_AI_STORY_SSE_MISSING_PEERS';

  constructor(
    /** What needed them: `ai-story-sse/server`, or `the server` (the `ai-story-sse` command). */
    readonly entry: string,
    readonly missing: readonly Peer[],
  ) {
    super(
      `${entry} needs packages that are not installed: ${missing.map(({ name }) => name).join(', ')} (the server's dependencies ` +
        `are optional peer dependencies of ai-story-sse, left out of a client-only install). Install ${missing.length === 1 ? 'it' : 'them'}: ${installCommand(missing)}`,
    );
  }
}

/** Throws {@link MissingPeerDependencyError} unless every one of `peers` resolves. */
export function requirePeers(entry: string, peers: readonly Peer[]): void {
  const missing = missingPeers(peers);
  if (missing.length > 0) throw new MissingPeerDependencyError(entry, missing);
}

/** The command's form of {@link requirePeers}: the error is one line on stderr and exit code 2, like a bad setting. */
export function exitUnlessPeers(entry: string, peers: readonly Peer[]): void {
  const missing = missingPeers(peers);
  if (missing.length === 0) return;
  process.stderr.write(`ai-story-sse: ${new MissingPeerDependencyError(entry, missing).message}\n`);
  process.exit(2);
}
