/**
 * The SharedWorker that holds one connection per server for every tab of an origin (see share.ts). Each tab
 * talks to it over its MessagePort (relay.ts); a tab that closes is noticed through the Web Lock it holds while
 * it lives (a SharedWorker gets no event when a port's page goes), or through its `bye` on `pagehide`.
 */
import { RelayHost, type HostMessage, type TabMessage } from './relay.js';

interface WorkerScope {
  onconnect: ((event: MessageEvent) => void) | null;
  navigator: { locks?: { request(name: string, callback: () => unknown): Promise<unknown> } };
}

const scope = globalThis as unknown as WorkerScope;
const ports = new Map<string, MessagePort>();
const host = new RelayHost((message: HostMessage) => ports.get(message.tab)?.postMessage(message));

/** The tab holds `ai-story-sse:tab:<id>` until it goes: when the lock is ours, the tab is gone. */
function watchTab(tab: string): void {
  void scope.navigator.locks?.request(`ai-story-sse:tab:${tab}`, () => {
    host.dropTab(tab);
    ports.delete(tab);
  });
}

scope.onconnect = (event: MessageEvent) => {
  const port = event.ports[0];
  if (!port) return;
  port.onmessage = (message: MessageEvent<TabMessage>) => {
    const data = message.data;
    if (data.op === 'hello') {
      ports.set(data.tab, port);
      watchTab(data.tab);
    }
    host.receive(data);
    if (data.op === 'bye') ports.delete(data.tab);
  };
  port.start();
};
