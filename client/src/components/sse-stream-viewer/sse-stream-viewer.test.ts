import { expect, fixture, html, oneEvent, waitUntil } from '@open-wc/testing';
import { emulateMedia } from '@web/test-runner-commands';
import '../../define.js';
import type { SseStreamViewer } from './sse-stream-viewer.component.js';
import type { DisconnectedEvent } from '../../sse-client.js';
import { ScriptedServer, errorResponse, scriptedServerPerTest, worker } from '../../../test/sse-server.js';
import { connected, done, failure, progress, reset, snapshot, stageUpdate, token } from '../../../test/fixtures.js';

let server: ScriptedServer;

function part(viewer: SseStreamViewer, selector: string): HTMLElement {
  const found = viewer.shadowRoot!.querySelector<HTMLElement>(selector);
  if (!found) throw new Error(`no ${selector} in the viewer`);
  return found;
}

/** The documented hook for a stage's text. */
function textOf(viewer: SseStreamViewer, stage: string): string {
  return part(viewer, `[data-stage="${stage}"] [part="text"]`).textContent ?? '';
}

function stageOrder(viewer: SseStreamViewer): string[] {
  return [...viewer.shadowRoot!.querySelectorAll<HTMLElement>('[part="stage"]')].map((panel) => panel.dataset['stage'] ?? '');
}

/**
 * A `<div>` (with `attributes`) in the page, for a viewer fixture inside it: `fixture(template, { parentNode })`.
 * Not `fixture(html`<div>…</div>`)`: for an element without `updateComplete` that waits for an animation frame, and
 * the runner runs two test files at once in one browser, so this page may be a background tab that gets none.
 */
function wrapperDiv(attributes: Record<string, string> = {}): HTMLDivElement {
  const wrapper = document.createElement('div');
  for (const [name, value] of Object.entries(attributes)) wrapper.setAttribute(name, value);
  return wrapper;
}

/** Streams `text` as one token per character, the way the worker does, ids `${start + i}-0`. */
function tokens(stage: string, text: string, start = 1, before = ''): Array<[ReturnType<typeof token>, string]> {
  return [...text].map((char, i) => [token(stage, before + text.slice(0, i + 1), char, `${start + i}-0`), `${start + i}-0`]);
}

scriptedServerPerTest((next) => (server = next));

describe('<sse-stream-viewer>', () => {
  it('shows a stage live: status, streamed text, progress and the done summary', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect></sse-stream-viewer>`);
    const stream = await server.nextStream();
    expect(new URL(stream.request.url).pathname).to.equal('/api/v1/sse/projects/1/stages/rewrite/');

    stream.event('connected', connected());
    await oneEvent(viewer, 'connected');
    await viewer.updateComplete;
    expect(part(viewer, '[part="badge"]').dataset['state']).to.equal('open');
    expect(part(viewer, '[part="badge"]').textContent).to.equal('Live');

    stream.event('stage_update', stageUpdate('rewrite', 'processing', 10, 'Rewriting the story'), '1-0');
    for (const [message, id] of tokens('rewrite', 'Once upon a time', 2)) stream.event('token', message, id);
    await viewer.textUpdateComplete();
    const last = oneEvent(viewer, 'done');
    stream.event('stage_update', stageUpdate('rewrite', 'completed', 100, 'Rewrite finished'), '30-0');
    stream.event('done', done('rewrite', 'Once upon a time', { tokens_used: 1234, latency_ms: 850 }), '31-0');
    await last;
    await viewer.textUpdateComplete();

    expect(textOf(viewer, 'rewrite')).to.equal('Once upon a time');
    expect(part(viewer, '[data-stage="rewrite"]').dataset['status']).to.equal('completed');
    expect(part(viewer, '[data-stage="rewrite"] [part="status"]').textContent).to.equal('Completed');
    expect(part(viewer, '[data-stage="rewrite"] [part="message"]').textContent).to.equal('Rewrite finished');
    expect(part(viewer, '[data-stage="rewrite"] [role="progressbar"]').getAttribute('aria-valuenow')).to.equal('100');
    expect(part(viewer, '[data-stage="rewrite"] [part="text"]').classList.contains('streaming')).to.equal(false);
    expect(part(viewer, '[part="metadata"] [data-key="tokens_used"]').textContent).to.equal((1234).toLocaleString());
  });

  it('shows the streaming cursor only while the stage runs', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect></sse-stream-viewer>`);
    const stream = await server.nextStream();
    const arrived = oneEvent(viewer, 'token');
    stream.event('token', token('rewrite', 'A', 'A'), '1-0');
    await arrived;
    await viewer.textUpdateComplete();
    const text = part(viewer, '[data-stage="rewrite"] [part="text"]');
    expect(text.classList.contains('streaming')).to.equal(true);
    expect(getComputedStyle(text, '::after').content).to.equal('"▍"');
    expect(text.textContent, 'the cursor is not part of the text').to.equal('A');
  });

  it('dispatches one DOM event per message, with the message as detail, that does not bubble out', async () => {
    const wrapper = wrapperDiv();
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect></sse-stream-viewer>`, { parentNode: wrapper });
    const seen: string[] = [];
    const leaked: string[] = [];
    for (const type of ['connected', 'token', 'stage_update', 'progress', 'done', 'error'] as const) {
      viewer.addEventListener(type, (event) => seen.push(`${type}:${(event.detail as { type: string }).type}`));
      wrapper.addEventListener(type, () => leaked.push(type));
    }
    const stream = await server.nextStream();
    const lastOne = oneEvent(viewer, 'error');
    stream
      .event('connected', connected())
      .event('stage_update', stageUpdate('rewrite', 'processing', 0, ''), '1-0')
      .event('token', token('rewrite', 'a', 'a'), '2-0')
      .event('progress', progress('rewrite', 1, 2, 'part 1'), '3-0')
      .event('done', done('rewrite', 'a'), '4-0')
      .event('error', failure('rewrite', 'model overloaded', 2), '5-0');
    const error = await lastOne;

    expect(error.detail).to.deep.equal(failure('rewrite', 'model overloaded', 2));
    expect(seen).to.deep.equal(['connected:connected', 'stage_update:stage_update', 'token:token', 'progress:progress', 'done:done', 'error:error']);
    expect(leaked).to.deep.equal([]);
  });

  it('shows every stage in pipeline order, unknown stages last', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" auto-connect></sse-stream-viewer>`);
    const stream = await server.nextStream();
    expect(new URL(stream.request.url).pathname).to.equal('/api/v1/sse/projects/1/');
    expect(part(viewer, '[part="empty"]').textContent).to.equal('Waiting for the first stage…');

    const last = oneEvent(viewer, 'token');
    stream
      .event('connected', connected(null))
      .event('stage_update', stageUpdate('video_generation', 'processing', 0, 'Rendering'), '1-0')
      .event('stage_update', stageUpdate('thumbnails', 'pending', 0, ''), '2-0')
      .event('progress', progress('image_generation', 3, 8, 'scene_3.png'), '3-0')
      .event('token', token('rewrite', 'Hi', 'Hi'), '4-0');
    await last;
    await viewer.textUpdateComplete();

    expect(stageOrder(viewer)).to.deep.equal(['rewrite', 'image_generation', 'video_generation', 'thumbnails']);
    const bar = part(viewer, '[data-stage="image_generation"] [role="progressbar"]');
    expect(bar.getAttribute('aria-valuenow')).to.equal('38');
    expect(bar.getAttribute('aria-valuemin')).to.equal('0');
    expect(bar.getAttribute('aria-valuemax')).to.equal('100');
    expect(part(viewer, '[data-stage="image_generation"] [part="progress-label"]').textContent).to.equal('3 / 8 · scene_3.png');
    expect(textOf(viewer, 'rewrite')).to.equal('Hi');
  });

  it('shows a task error with its retry count', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="storyboard" auto-connect></sse-stream-viewer>`);
    const stream = await server.nextStream();
    const failed = oneEvent(viewer, 'error');
    stream.event('error', failure('storyboard', 'Model overloaded', 3), '1-0');
    await failed;
    await viewer.updateComplete;

    expect(part(viewer, '[data-stage="storyboard"]').dataset['status']).to.equal('failed');
    expect(part(viewer, '[part="error"]').getAttribute('role')).to.equal('alert');
    expect(part(viewer, '[part="error"]').textContent).to.contain('Model overloaded');
    expect(part(viewer, '[part="retry-count"]').textContent).to.equal('(3 retries)');
    expect(viewer.connectionState, 'a task error is not a connection error').to.equal('open');
  });

  it('redraws its state from a reset event', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" auto-connect></sse-stream-viewer>`);
    const stream = await server.nextStream();
    const typed = oneEvent(viewer, 'token');
    stream.event('token', token('rewrite', 'stale text', 'stale text'), '1-0').event('error', failure('storyboard', 'old failure', 1), '2-0');
    await typed;
    await viewer.textUpdateComplete();

    const resetEvent = oneEvent(viewer, 'reset');
    const redrawn = new Promise<void>((resolve) => viewer.addEventListener('stage_update', () => resolve(), { once: true }));
    stream.write(
      `id: 90-0\nevent: reset\ndata: ${JSON.stringify(
        reset({
          rewrite: {
            stage_update: stageUpdate('rewrite', 'completed', 100, 'Rewrite finished'),
            token: token('rewrite', 'The whole new text', '.'),
            done: { ...done('rewrite', 'The whole new text.'), timestamp: 1_732_670_001 },
          },
          image_generation: { progress: progress('image_generation', 2, 4, 'scene_2.png') },
        }),
      )}\n\n`,
    );
    stream.event('stage_update', stageUpdate('video_generation', 'pending', 0, ''), '91-0');
    expect((await resetEvent).detail.reason).to.equal('expired');
    await redrawn;
    await viewer.textUpdateComplete();

    expect(textOf(viewer, 'rewrite')).to.equal('The whole new text.');
    expect(part(viewer, '[data-stage="rewrite"]').dataset['status']).to.equal('completed');
    expect(stageOrder(viewer), 'storyboard is not in the log any more').to.deep.equal(['rewrite', 'image_generation', 'video_generation']);
    expect(part(viewer, '[data-stage="image_generation"] [role="progressbar"]').getAttribute('aria-valuenow')).to.equal('50');
  });

  it('keeps the text whole through a dropped connection, resuming with Last-Event-ID', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect></sse-stream-viewer>`);
    const first = await server.nextStream();
    const story = 'It was a dark and stormy night';
    first.write('retry: 20\n\n').event('connected', connected());
    const parts = tokens('rewrite', story);
    for (const [message, id] of parts.slice(0, 10)) first.event('token', message, id);
    await new Promise<void>((resolve) => viewer.addEventListener('token', (event) => event.detail.id === '10-0' && resolve()));
    first.fail();

    const second = await server.nextStream();
    expect(second.lastEventId).to.equal('10-0');
    const finished = oneEvent(viewer, 'done');
    second.event('connected', connected('rewrite', true));
    for (const [message, id] of parts.slice(10)) second.event('token', message, id);
    second.event('done', done('rewrite', story), '99-0');
    await finished;
    await viewer.textUpdateComplete();
    expect(textOf(viewer, 'rewrite')).to.equal(story);
  });

  it('counts down to the retry after a 503 and retries at once on "Retry now"', async () => {
    server.respondWith(() => errorResponse(503, 'unavailable', { 'retry-after': '30' }));
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect></sse-stream-viewer>`);
    const gone = await oneEvent(viewer, 'disconnected');
    expect(gone.detail).to.include({ status: 503, willReconnect: true });
    await viewer.updateComplete;
    const badge = part(viewer, '[part="badge"]');
    expect(badge.dataset['state']).to.equal('reconnecting');
    expect(badge.textContent).to.match(/^Reconnecting in (30|29) s$/);

    part(viewer, '[part="retry-button"]').click();
    await server.nextStream();
    expect(server.requests).to.have.length(2);
  });

  it('stops on 401 and says why', async () => {
    server.respondWith(() => errorResponse(401, 'unauthorized'));
    const viewer = await fixture<SseStreamViewer>(
      html`<sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect .token=${'expired-token'}></sse-stream-viewer>`,
    );
    const gone = await oneEvent(viewer, 'disconnected');
    await viewer.updateComplete;
    expect(gone.detail).to.deep.include({ status: 401, willReconnect: false });
    expect(new URL(server.requests.at(-1)!.url).pathname, 'a token selects the authenticated endpoint').to.equal('/api/v1/sse/projects/1/stages/rewrite/stream/');
    expect(server.requests.at(-1)!.headers.get('authorization')).to.equal('Bearer expired-token');
    expect(part(viewer, '[part="badge"]').dataset['state']).to.equal('closed');
    expect(part(viewer, '[part="notice"]').textContent).to.contain('401');
    expect(viewer.shadowRoot!.querySelector('[part="retry-button"]')).to.exist;
  });

  it('says why after two attempts in a row got no response: the server it cannot reach, and the CORS hint', async function () {
    this.timeout(20_000);
    // Nothing listens there (and Chromium refuses the port): the same TypeError as a server that is down or a CORS refusal.
    worker.resetHandlers(); // the scripted server answers any origin
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite" base-url="http://127.0.0.1:1"></sse-stream-viewer>`);
    const failures: Array<DisconnectedEvent['failure']> = [];
    viewer.addEventListener('disconnected', (event) => failures.push(event.detail.failure));
    viewer.connect();
    await waitUntil(() => failures.length >= 1, 'the first failure', { timeout: 5000 });
    expect(failures[0]).to.deep.include({ kind: 'network', attempts: 1, server: 'http://127.0.0.1:1', fatal: false, message: 'Failed to fetch' });
    await viewer.updateComplete;
    // Unless the jittered retry came within this microtask: one failure is not explained yet.
    if (failures.length === 1) expect(viewer.shadowRoot!.querySelector('[part="notice"]')).to.equal(null);

    await waitUntil(() => failures.length >= 2, 'the second failure', { timeout: 5000 });
    expect(failures[1]).to.deep.include({ kind: 'network', attempts: 2 });
    await viewer.updateComplete;
    expect(part(viewer, '[part="badge"]').dataset['state']).to.equal('reconnecting');
    expect(part(viewer, '[part="notice"]').textContent).to.equal(
      'Cannot reach http://127.0.0.1:1. The server may be down, or the browser blocked it (CORS): on another origin, set SSE_CORS_ORIGINS on the server or proxy it through your own origin.',
    );
    viewer.closest('div')?.setAttribute('lang', 'zh');
    await waitUntil(() => part(viewer, '[part="notice"]').textContent?.startsWith('无法连接 http://127.0.0.1:1。'), 'in Chinese too');
    expect(part(viewer, '[part="notice"]').textContent).to.contain('SSE_CORS_ORIGINS');
  });

  it('stops on auth_not_configured (503 without Retry-After) and says what to set', async () => {
    server.respondWith(() => errorResponse(503, 'auth_not_configured'));
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect .token=${'a-token'}></sse-stream-viewer>`);
    const gone = await oneEvent(viewer, 'disconnected');
    await viewer.updateComplete;
    expect(gone.detail).to.deep.include({ status: 503, willReconnect: false });
    expect(gone.detail.failure).to.deep.include({ kind: 'http', status: 503, code: 'auth_not_configured', fatal: true, attempts: 1 });
    expect(part(viewer, '[part="badge"]').dataset['state']).to.equal('closed');
    expect(part(viewer, '[part="notice"]').textContent).to.contain('set SSE_AUTH_SECRET (or a public key) on the server');
    expect(server.requests).to.have.length(1);
  });

  it('reads a boolean attribute set to "false" (as Vue writes :auto-connect="false") as off', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect="false" show-logs="FALSE"></sse-stream-viewer>`);
    expect(viewer.autoConnect).to.equal(false);
    expect(viewer.showLogs).to.equal(false);
    expect(viewer.shadowRoot!.querySelector('[part="connect-button"]')).to.exist;
    viewer.setAttribute('auto-connect', '');
    expect(viewer.autoConnect).to.equal(true);
    await server.nextStream();
  });

  it('waits for connect() without auto-connect, and offers connect and disconnect buttons', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite"></sse-stream-viewer>`);
    expect(server.requests).to.have.length(0);
    expect(viewer.shadowRoot!.querySelector('[part="disconnect-button"]')).to.equal(null);

    part(viewer, '[part="connect-button"]').click();
    const stream = await server.nextStream();
    stream.event('connected', connected());
    await oneEvent(viewer, 'connected');
    await viewer.updateComplete;
    expect(viewer.shadowRoot!.querySelector('[part="connect-button"]')).to.equal(null);

    const gone = oneEvent(viewer, 'disconnected');
    part(viewer, '[part="disconnect-button"]').click();
    expect((await gone).detail).to.deep.equal({ reason: 'disconnect', willReconnect: false });
    expect(viewer.connectionState).to.equal('closed');
  });

  it('reconnects when stage-name or project-id change', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect></sse-stream-viewer>`);
    await server.nextStream();
    viewer.stageName = 'storyboard';
    expect(new URL((await server.nextStream()).request.url).pathname).to.equal('/api/v1/sse/projects/1/stages/storyboard/');
    viewer.setAttribute('project-id', '2');
    expect(new URL((await server.nextStream()).request.url).pathname).to.equal('/api/v1/sse/projects/2/stages/storyboard/');
    expect(server.requests).to.have.length(3);
  });

  it('disconnects when removed from the page', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect></sse-stream-viewer>`);
    const stream = await server.nextStream();
    stream.event('connected', connected());
    await oneEvent(viewer, 'connected');
    const gone = oneEvent(viewer, 'disconnected');
    viewer.remove();
    expect((await gone).detail.reason).to.equal('disconnect');
    expect(viewer.connectionState).to.equal('closed');
  });

  it('draws a snapshot in one update, before any token, without re-firing token/done events', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" auto-connect></sse-stream-viewer>`);
    const stream = await server.nextStream();
    const fired: string[] = [];
    for (const type of ['token', 'stage_update', 'progress', 'done', 'error'] as const) viewer.addEventListener(type, () => fired.push(type));
    stream.event('connected', connected(null));
    await oneEvent(viewer, 'connected');
    await viewer.updateComplete;
    const empty = part(viewer, '[part="empty"]');
    expect(getComputedStyle(empty).visibility, 'the placeholder does not flash before the snapshot').to.equal('hidden');

    const renders: boolean[] = [];
    const host = viewer as unknown as { update(changed: Map<PropertyKey, unknown>): void };
    const update = host.update.bind(viewer);
    host.update = (changed) => {
      update(changed);
      renders.push(viewer.shadowRoot!.querySelector('[part="empty"]') === null);
    };
    const state = snapshot({
      rewrite: { stage_update: stageUpdate('rewrite', 'completed', 100, 'Rewrite finished'), done: done('rewrite', 'The end.', { tokens_used: 7 }) },
      storyboard: { stage_update: stageUpdate('storyboard', 'processing', 40, 'Drawing'), progress: progress('storyboard', 2, 5, 'panel 2'), text: 'Panel one' },
    });
    const drawn = oneEvent(viewer, 'snapshot');
    stream.event('snapshot', state, '9-0');
    expect((await drawn).detail).to.deep.equal(state);
    await viewer.textUpdateComplete();

    expect(renders, 'one render, already with the stages').to.deep.equal([true]);
    expect(textOf(viewer, 'rewrite')).to.equal('The end.');
    expect(part(viewer, '[data-stage="rewrite"] [part="status"]').dataset['status']).to.equal('completed');
    expect(part(viewer, '[part="metadata"] [data-key="tokens_used"]').textContent).to.equal('7');
    expect(textOf(viewer, 'storyboard')).to.equal('Panel one');
    expect(part(viewer, '[data-stage="storyboard"] [part="status"]').dataset['status']).to.equal('processing');
    expect(part(viewer, '[data-stage="storyboard"] [role="progressbar"]').getAttribute('aria-valuenow')).to.equal('40');
    expect(part(viewer, '[data-stage="storyboard"] [part="progress-label"]').textContent).to.contain('panel 2');
    expect(fired, 'history is not re-fired as message events').to.deep.equal([]);

    // The next compact token continues the snapshot's text.
    const next = oneEvent(viewer, 'token');
    stream.event('token', { type: 'token', stage: 'storyboard', project_id: '1', timestamp: 2, content: ', two', offset: 9 }, '10-0');
    expect((await next).detail.full_text).to.equal('Panel one, two');
    await viewer.textUpdateComplete();
    expect(textOf(viewer, 'storyboard')).to.equal('Panel one, two');
  });

  it('appends 20,000 tokens to one Text node, batched per frame', async function () {
    this.timeout(30_000);
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect></sse-stream-viewer>`);
    const stream = await server.nextStream();
    const first = oneEvent(viewer, 'token');
    stream.event('token', token('rewrite', 'w0 ', 'w0 '), '0-0');
    await first;
    await viewer.textUpdateComplete();
    const text = part(viewer, '[data-stage="rewrite"] [part="text"]');
    const node = text.firstChild;
    const records: MutationRecord[] = [];
    const observer = new MutationObserver((batch) => records.push(...batch));
    observer.observe(text, { childList: true, characterData: true, subtree: true });

    const count = 20_000;
    let full = 'w0 ';
    let chunk = '';
    for (let i = 1; i < count; i++) {
      const piece = `w${i} `;
      full += piece;
      // full_text as the server sends it would make this test quadratic in size; the viewer accepts content alone.
      chunk += `id: ${i}-0\nevent: token\ndata: ${JSON.stringify({ ...token('rewrite', '', piece), full_text: undefined })}\n\n`;
      if (i % 1000 === 0) {
        stream.write(chunk);
        chunk = '';
      }
    }
    const finished = oneEvent(viewer, 'done');
    stream.write(chunk).event('done', done('rewrite', full), 'done-0');
    await finished;
    await viewer.textUpdateComplete();
    observer.disconnect();

    expect(text.textContent).to.equal(full);
    expect(text.firstChild, 'the same Text node, appended to').to.equal(node);
    expect(records.filter((record) => record.type === 'childList')).to.have.length(0);
    expect(records.length, 'DOM writes are batched, not one per token').to.be.below(200);
  });

  it('picks Chinese labels from lang and lets `labels` override them', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite"></sse-stream-viewer>`, { parentNode: wrapperDiv({ lang: 'zh-CN' }) });
    expect(part(viewer, '[part="badge"]').textContent).to.equal('已关闭');
    expect(part(viewer, '[part="stage-title"]').textContent).to.equal('改写');
    expect(part(viewer, '[part="connect-button"]').textContent).to.equal('连接');

    viewer.labels = { connect: '开始观看' };
    await viewer.updateComplete;
    expect(part(viewer, '[part="connect-button"]').textContent).to.equal('开始观看');
  });

  it('keeps a capped event log when show-logs is set, one line for a run of tokens', async () => {
    const viewer = await fixture<SseStreamViewer>(
      html`<sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect show-logs max-log-entries="4"></sse-stream-viewer>`,
    );
    const stream = await server.nextStream();
    const finished = oneEvent(viewer, 'done');
    stream.event('connected', connected()).event('stage_update', stageUpdate('rewrite', 'processing', 0, 'go'), '1-0');
    for (const [message, id] of tokens('rewrite', 'abcdef', 2)) stream.event('token', message, id);
    stream.event('done', done('rewrite', 'abcdef'), '9-0');
    await finished;
    await viewer.textUpdateComplete();
    await viewer.updateComplete;

    const lines = [...viewer.shadowRoot!.querySelectorAll('[part="log-list"] li')].map((li) => li.getAttribute('data-type'));
    expect(lines).to.deep.equal(['connected', 'stage_update', 'token', 'done']);
    expect(viewer.shadowRoot!.querySelector('[part="log-list"] li[data-type="token"]')!.textContent).to.contain('×6');
  });

  it('explains an invalid project-id instead of throwing', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="not valid" auto-connect></sse-stream-viewer>`);
    expect(part(viewer, '[part="notice"]').textContent).to.contain('projectId "not valid" is invalid');
    expect(server.requests).to.have.length(0);
  });

  it('passes an accessibility audit with every kind of content', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" auto-connect show-logs></sse-stream-viewer>`);
    const stream = await server.nextStream();
    const last = oneEvent(viewer, 'error');
    stream
      .event('connected', connected(null))
      .event('stage_update', stageUpdate('rewrite', 'completed', 100, 'Rewrite finished'), '1-0')
      .event('done', done('rewrite', 'A short story.', { tokens_used: 42 }), '2-0')
      .event('token', token('storyboard', 'Scene 1', 'Scene 1'), '3-0')
      .event('progress', progress('image_generation', 1, 4, 'scene_1.png'), '4-0')
      .event('error', failure('video_generation', 'GPU quota exceeded', 2), '5-0');
    await last;
    await viewer.textUpdateComplete();
    await expect(viewer).to.be.accessible();
    await emulateMedia({ colorScheme: 'dark' });
    try {
      expect(getComputedStyle(viewer).backgroundColor, 'the dark scheme applies').to.equal('rgb(13, 17, 23)');
      await expect(viewer).to.be.accessible();
    } finally {
      await emulateMedia({ colorScheme: 'light' });
    }
  });
});
