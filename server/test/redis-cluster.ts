/**
 * Starts a private three-master Redis Cluster on free loopback ports for a test file, and stops it by its pids.
 * Each node is `redis-server --cluster-enabled yes` with its own folder and an explicit bus port (so the
 * bus never collides with another port); `redis-cli --cluster create` assigns the slots. Never touches 6379.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './redis-server.js';
import { waitForPort } from './wait-for-port.js';
import { waitUntil } from './wait-until.js';

export interface ClusterNodeAddress {
  host: string;
  port: number;
}

export interface TestRedisCluster {
  /** The masters, in the order `redis-cli --cluster create` got them. */
  nodes: ClusterNodeAddress[];
  /** `REDIS_CLUSTER_NODES` for a server process: `127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`. */
  nodesEnv: string;
  /** The port of the master that serves `slot` (0..16383). */
  portOfSlot(slot: number): number;
  /** Kills one node (SIGKILL, as a crash). The others keep serving their own slots (full coverage is not required). */
  kill(port: number): Promise<void>;
  /** Stops every node and removes their folders. */
  close(): Promise<void>;
}

const MASTERS = 3;

export async function startRedisCluster(): Promise<TestRedisCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'sse-redis-cluster-'));
  const children: ChildProcess[] = [];
  const byPort = new Map<number, ChildProcess>();
  const nodes: ClusterNodeAddress[] = [];
  // Slot ranges by port, read back from CLUSTER SLOTS once the cluster is up.
  let ranges: { from: number; to: number; port: number }[] = [];

  const close = async () => {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      ),
    );
    await rm(dir, { recursive: true, force: true });
  };

  try {
    for (let i = 0; i < MASTERS; i++) {
      const port = await freePort();
      const busPort = await freePort();
      const child = spawn(
        'redis-server',
        [
          ...['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--loglevel', 'warning'],
          ...['--cluster-enabled', 'yes', '--cluster-port', String(busPort), '--cluster-config-file', join(dir, `nodes-${port}.conf`)],
          // Fail fast when a node is gone, rather than Redis's 15 s default, and keep serving the other slots then.
          ...['--cluster-node-timeout', '2000', '--cluster-require-full-coverage', 'no'],
        ],
        { stdio: ['ignore', 'ignore', 'inherit'] },
      );
      children.push(child);
      byPort.set(port, child);
      const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`redis-server exited early with code ${code}`))));
      exited.catch(() => {});
      await Promise.race([waitForPort(port), exited]);
      nodes.push({ host: '127.0.0.1', port });
    }

    await createCluster(nodes);

    const admin = new Redis(nodes[0]!.port, '127.0.0.1');
    try {
      await waitForClusterOk(nodes);
      const slots = (await admin.call('CLUSTER', 'SLOTS')) as [number, number, [string, number, ...unknown[]], ...unknown[]][];
      ranges = slots.map(([from, to, [, port]]) => ({ from, to, port: Number(port) }));
    } finally {
      await admin.quit();
    }
  } catch (error) {
    await close();
    throw error;
  }

  return {
    nodes,
    nodesEnv: nodes.map(({ host, port }) => `${host}:${port}`).join(','),
    portOfSlot(slot) {
      const range = ranges.find(({ from, to }) => slot >= from && slot <= to);
      if (!range) throw new Error(`slot ${slot} is served by no master`);
      return range.port;
    },
    async kill(port) {
      const child = byPort.get(port);
      if (!child) throw new Error(`no node of this cluster listens on ${port}`);
      if (child.exitCode !== null || child.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      });
    },
    close,
  };
}

/** `redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`; rejects with its output when it fails. */
function createCluster(nodes: ClusterNodeAddress[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'redis-cli',
      ['--cluster', 'create', ...nodes.map(({ host, port }) => `${host}:${port}`), '--cluster-replicas', '0', '--cluster-yes'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout!.on('data', (chunk) => (output += chunk));
    child.stderr!.on('data', (chunk) => (output += chunk));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`redis-cli --cluster create exited with ${code}:\n${output}`))));
  });
}

/** Polls CLUSTER INFO on every node until each says `cluster_state:ok` (they agree on the slots). */
async function waitForClusterOk(nodes: ClusterNodeAddress[], timeoutMs = 20_000): Promise<void> {
  const clients = nodes.map(({ host, port }) => new Redis(port, host));
  let infos: string[] = [];
  try {
    await waitUntil(
      async () => {
        infos = await Promise.all(clients.map((client) => client.call('CLUSTER', 'INFO') as Promise<string>));
        return infos.every((info) => /^cluster_state:ok\r?$/m.test(info));
      },
      () => `every node says cluster_state:ok:\n${infos.join('\n')}`,
      timeoutMs,
    );
  } finally {
    await Promise.all(clients.map((client) => client.quit()));
  }
}
