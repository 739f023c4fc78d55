/** Resolves once something accepts TCP connections on 127.0.0.1:`port`; for processes that say nothing when they are ready. */
import { connect } from 'node:net';
import { waitUntil } from './wait-until.js';

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  return waitUntil(() => accepts(port), `something listens on ${port}`, timeoutMs);
}
