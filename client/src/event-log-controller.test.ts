import { expect } from '@open-wc/testing';
import type { ReactiveController } from 'lit';
import { EventLogController, type EventLogHost } from './event-log-controller.js';
import { chineseLabels, englishLabels } from './labels.js';
import type { HubEvent } from './stream-hub.js';
import { connected, done, failure, progress, reset, stageUpdate, token } from '../test/fixtures.js';

/** Just enough of a Lit host: counts render requests and runs the update hooks on demand. */
class Host implements EventLogHost {
  showLogs = true;
  maxLogEntries = 200;
  renders = 0;
  readonly controllers: ReactiveController[] = [];
  readonly updateComplete = Promise.resolve(true);
  addController(controller: ReactiveController): void {
    this.controllers.push(controller);
  }
  removeController(): void {}
  requestUpdate(): void {
    this.renders++;
  }
}

const lines = (log: EventLogController, labels = englishLabels) =>
  log.entries.map(({ type, stage, event, count }) => [type, stage ?? '', labels.log(event), count]);

describe('EventLogController', () => {
  it('adds itself to its host and writes one summarised line per event', () => {
    const host = new Host();
    const log = new EventLogController(host, () => null);
    expect(host.controllers).to.deep.equal([log]);
    const events: HubEvent[] = [
      { type: 'state', data: { state: 'connecting', previous: 'closed' } },
      { type: 'connected', data: connected('rewrite', true) },
      { type: 'stage_update', data: stageUpdate('rewrite', 'processing', 10, 'Rewriting') },
      { type: 'progress', data: progress('rewrite', 1, 4, 'part 1') },
      { type: 'done', data: done('rewrite', 'Once') },
      { type: 'error', data: failure('rewrite', 'Model overloaded', 2) },
      { type: 'reset', data: reset({}) },
      { type: 'token_expired', data: { type: 'token_expired', project_id: '1', stage: 'rewrite', timestamp: 0 } },
      { type: 'disconnected', data: { reason: 'http_status', status: 503, willReconnect: true } },
      { type: 'reconnecting', data: { attempt: 2, delayMs: 1500, reason: 'http_status' } },
    ];
    for (const event of events) log.record(event);
    expect(lines(log)).to.deep.equal([
      ['state', '', 'closed → connecting', 1],
      ['connected', '', 'resumed', 1],
      ['stage_update', 'rewrite', 'processing 10% — Rewriting', 1],
      ['progress', 'rewrite', '1/4 part 1', 1],
      ['done', 'rewrite', '4 characters', 1],
      ['error', 'rewrite', 'Model overloaded (retry 2)', 1],
      ['reset', '', 'expired', 1],
      ['token_expired', '', '', 1],
      ['disconnected', '', 'http_status 503', 1],
      ['reconnecting', '', 'attempt 2 in 1500 ms (http_status)', 1],
    ]);
  });

  it('counts a run of tokens of one stage on one line', () => {
    const log = new EventLogController(new Host(), () => null);
    for (const stage of ['rewrite', 'rewrite', 'rewrite', 'storyboard', 'rewrite']) log.record({ type: 'token', data: token(stage, 'a', 'a') });
    expect(lines(log)).to.deep.equal([
      ['token', 'rewrite', '', 3],
      ['token', 'storyboard', '', 1],
      ['token', 'rewrite', '', 1],
    ]);
  });

  it('keeps the newest maxLogEntries lines, with ids that keep growing', () => {
    const host = new Host();
    host.maxLogEntries = 2;
    const log = new EventLogController(host, () => null);
    for (const status of ['pending', 'processing', 'completed'] as const) log.record({ type: 'stage_update', data: stageUpdate('rewrite', status, 0, '') });
    expect(log.entries.map((entry) => [entry.id, englishLabels.log(entry.event)])).to.deep.equal([
      [2, 'processing 0%'],
      [3, 'completed 0%'],
    ]);
  });

  it('logs events the protocol does not define by their own name, and does not repeat wrapped ones', () => {
    const log = new EventLogController(new Host(), () => null);
    log.record({ type: 'message', data: { type: 'token', data: token('rewrite', 'a', 'a'), id: '1-0' } });
    log.record({ type: 'message', data: { type: 'thumbnail', data: { url: '/a.png' }, id: '2-0' } });
    log.record({ type: 'message', data: { type: 'message', data: 'plain text', id: undefined } });
    expect(lines(log)).to.deep.equal([
      ['thumbnail', '', '', 1],
      ['message', '', 'plain text', 1],
    ]);
  });

  it('re-renders its host for each event only while the log is shown', () => {
    const host = new Host();
    host.showLogs = false;
    const log = new EventLogController(host, () => null);
    log.record({ type: 'token', data: token('rewrite', 'a', 'a') });
    expect(host.renders).to.equal(0);
    host.showLogs = true;
    log.record({ type: 'token', data: token('rewrite', 'ab', 'b') });
    expect(host.renders).to.equal(1);
    expect(log.entries, 'a hidden log still records').to.have.length(1);
  });

  describe('scrolling', () => {
    let list: HTMLElement;
    beforeEach(() => {
      list = document.createElement('ol');
      list.style.cssText = 'height: 100px; overflow: auto; margin: 0';
      document.body.append(list);
    });
    afterEach(() => list.remove());
    function grow(): void {
      for (let i = 0; i < 20; i++) {
        const line = document.createElement('li');
        line.style.height = '20px';
        list.append(line);
      }
    }

    it('keeps the newest line in view while the reader is at the bottom', () => {
      const log = new EventLogController(new Host(), () => list);
      log.hostUpdate();
      grow();
      log.hostUpdated();
      expect(list.scrollTop).to.equal(list.scrollHeight - list.clientHeight);
    });

    it('leaves the position alone once the reader scrolled up', () => {
      const log = new EventLogController(new Host(), () => list);
      grow();
      list.scrollTop = 0;
      log.hostUpdate();
      grow();
      log.hostUpdated();
      expect(list.scrollTop).to.equal(0);
    });
  });
});
