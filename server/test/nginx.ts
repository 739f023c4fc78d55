/**
 * Runs Debian's nginx for a test, in the foreground, from deploy/nginx.conf with only its addresses and
 * paths replaced (one source of truth for the proxy settings), everything under a temporary folder.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './redis-server.js';
import { waitForPort } from './wait-for-port.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const NGINX_CONF = join(ROOT, 'deploy', 'nginx.conf');
/** The same with TLS and HTTP/2 towards the browsers. */
export const NGINX_HTTP2_CONF = join(ROOT, 'deploy', 'nginx-http2.conf');
/** Debian installs nginx in /usr/sbin, which is not on every user's PATH. */
export const NGINX = process.env.NGINX ?? (existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx');

export interface NginxConfigOptions {
  /** The port nginx listens on (on 127.0.0.1). */
  port: number;
  /** The ports of the server processes, in place of the upstream servers of the file. */
  upstreams: number[];
  /** Folder for the pid file, the logs and nginx's temporary files. */
  dir: string;
  /** The certificate and key files in place of the file's `ssl_certificate` / `ssl_certificate_key` (a TLS config). */
  tls?: { certificate: string; key: string } | undefined;
}

/**
 * deploy/nginx.conf with the test's ports and paths: the listen address, the upstream servers (their
 * parameters kept), the access log, and a pid file and temporary paths added. Throws when the file's shape
 * changed so that a replacement would silently not apply.
 */
export function nginxConfig(source: string, { port, upstreams, dir, tls }: NginxConfigOptions): string {
  let text = source;
  const replace = (pattern: RegExp, replacement: (match: string, ...groups: string[]) => string, what: string) => {
    const count = text.match(new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : `${pattern.flags}g`))?.length ?? 0;
    if (count === 0) throw new Error(`deploy/nginx.conf: ${what} not found (${pattern})`);
    text = text.replace(pattern, replacement);
  };
  // In each upstream block, its `server host:port ...;` lines become one line per test server.
  replace(
    /^(\s*)upstream \S+ \{\n[\s\S]*?^\1\}\n/gm,
    (block) => {
      let first = true;
      return block.replace(/^(\s*)server (127\.0\.0\.1:\d+)([^;\n]*);\n/gm, (_match, indent: string, _address, parameters: string) => {
        if (!first) return '';
        first = false;
        return upstreams.map((upstream) => `${indent}server 127.0.0.1:${upstream}${parameters};\n`).join('');
      });
    },
    'the upstream blocks',
  );
  if (!/^\s*server 127\.0\.0\.1:\d+/m.test(text)) throw new Error('deploy/nginx.conf: no upstream server found');
  replace(/^(\s*)listen \d+((?: ssl)?(?: http2)?);$/m, (_match, indent, parameters) => `${indent}listen 127.0.0.1:${port}${parameters};`, 'the listen directive');
  if (tls) {
    replace(/^(\s*)ssl_certificate \S+;$/m, (_match, indent) => `${indent}ssl_certificate ${tls.certificate};`, 'ssl_certificate');
    replace(/^(\s*)ssl_certificate_key \S+;$/m, (_match, indent) => `${indent}ssl_certificate_key ${tls.key};`, 'ssl_certificate_key');
  }
  replace(/^(\s*)access_log \S+ sse;$/m, (_match, indent) => `${indent}access_log ${join(dir, 'access.log')} sse;`, 'the access_log');
  replace(
    /^http \{$/m,
    () =>
      [
        'http {',
        ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `    ${kind}_temp_path ${join(dir, `${kind}_temp`)};`),
      ].join('\n'),
    'the http block',
  );
  return [`pid ${join(dir, 'nginx.pid')};`, `error_log ${join(dir, 'error.log')} warn;`, text].join('\n');
}

/**
 * The environment the header of deploy/nginx.conf exports for the server processes (its `#   export NAME=value`
 * lines, quotes removed, nothing expanded), so a test starts a process the way the file tells operators to.
 */
export function deployEnvironment(source: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of source.split('\n')) {
    if (!line.startsWith('#')) break;
    const exported = /^#\s+export\s+(.*)$/.exec(line)?.[1];
    if (exported === undefined) continue;
    for (const [, name, value] of exported.matchAll(/([A-Z_][A-Z0-9_]*)=("[^"]*"|\S+)/g)) env[name!] = value!.replace(/^"(.*)"$/, '$1');
  }
  if (Object.keys(env).length === 0) throw new Error('deploy/nginx.conf: no `#   export NAME=value` line in its header');
  return env;
}

export interface RunningNginx {
  url: string;
  port: number;
  /** The generated configuration, for failure messages. */
  config: string;
  /** nginx's error log and output so far. */
  output(): Promise<string>;
  /** The access log so far (deploy/nginx.conf's `access_log`, moved into the test's folder). */
  accessLog(): Promise<string>;
  close(): Promise<void>;
}

/**
 * Starts nginx in the foreground on a free port in front of `upstreams`; `edit` may change the config (for a negative
 * control). `options.conf`: another file than deploy/nginx.conf (with `options.tls`, its certificate and key).
 */
export async function startNginx(
  upstreams: number[],
  edit: (config: string) => string = (config) => config,
  options: { conf?: string; tls?: { certificate: string; key: string } } = {},
): Promise<RunningNginx> {
  const dir = await mkdtemp(join(tmpdir(), 'sse-nginx-'));
  // nginx's workers drop root for `nobody` and must reach their temporary folders inside this one.
  await chmod(dir, 0o755);
  const port = await freePort();
  const config = edit(nginxConfig(await readFile(options.conf ?? NGINX_CONF, 'utf8'), { port, upstreams, dir, tls: options.tls }));
  const configPath = join(dir, 'nginx.conf');
  await writeFile(configPath, config);
  const child = spawn(NGINX, ['-p', dir, '-c', configPath, '-e', join(dir, 'error.log'), '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let printed = '';
  child.stdout!.on('data', (chunk) => (printed += chunk));
  child.stderr!.on('data', (chunk) => (printed += chunk));
  const output = async () => printed + (await readFile(join(dir, 'error.log'), 'utf8').catch(() => ''));
  const exited = new Promise<never>((_, reject) => {
    child.once('error', reject);
    child.once('exit', async (code) => reject(new Error(`nginx exited with ${code}:\n${await output()}\n--- config ---\n${config}`)));
  });
  exited.catch(() => {});
  try {
    await Promise.race([waitForPort(port), exited]);
  } catch (error) {
    await stop(child);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    config,
    output,
    accessLog: () => readFile(join(dir, 'access.log'), 'utf8').catch(() => ''),
    async close() {
      await stop(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}
