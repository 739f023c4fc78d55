import { expect } from '@open-wc/testing';
import { NetworkWatcher, isOffline } from './network-watcher.js';

let watcher: NetworkWatcher | undefined;

afterEach(() => {
  watcher?.stop();
  Reflect.deleteProperty(navigator, 'onLine');
});

describe('isOffline', () => {
  it('follows navigator.onLine', () => {
    Object.defineProperty(navigator, 'onLine', { configurable: true, get: () => false });
    expect(isOffline()).to.equal(true);
    Object.defineProperty(navigator, 'onLine', { configurable: true, get: () => true });
    expect(isOffline()).to.equal(false);
  });
});

describe('NetworkWatcher', () => {
  it('reports offline and online between start() and stop(), once per event however often started', () => {
    const seen: string[] = [];
    watcher = new NetworkWatcher({ online: () => seen.push('online'), offline: () => seen.push('offline') });
    window.dispatchEvent(new Event('offline'));
    expect(seen, 'nothing before start()').to.deep.equal([]);

    watcher.start();
    watcher.start();
    window.dispatchEvent(new Event('offline'));
    window.dispatchEvent(new Event('online'));
    expect(seen).to.deep.equal(['offline', 'online']);

    watcher.stop();
    window.dispatchEvent(new Event('offline'));
    expect(seen, 'nothing after stop()').to.deep.equal(['offline', 'online']);
  });
});
