// The viewer's words: labels deep-merged over the language's, `lang` followed as it changes, the done summary's
// metadata and the event log in the viewer's language.
import { expect, fixture, html, oneEvent, waitUntil } from '@open-wc/testing';
import '../../define.js';
import type { SseStreamViewer } from './sse-stream-viewer.component.js';
import { ScriptedServer, scriptedServerPerTest } from '../../../test/sse-server.js';
import { connected, done, stageUpdate, token } from '../../../test/fixtures.js';

let server: ScriptedServer;

function part(viewer: SseStreamViewer, selector: string): HTMLElement {
  const found = viewer.shadowRoot!.querySelector<HTMLElement>(selector);
  if (!found) throw new Error(`no ${selector} in the viewer`);
  return found;
}

const badge = (viewer: SseStreamViewer) => part(viewer, '[part="badge"]').textContent;

/** A `<div>` in the page with `attributes`, for `fixture(template, { parentNode })`. */
function wrapperDiv(attributes: Record<string, string> = {}): HTMLDivElement {
  const wrapper = document.createElement('div');
  for (const [name, value] of Object.entries(attributes)) wrapper.setAttribute(name, value);
  return wrapper;
}

/** The done summary's rows as [label, value] pairs. */
function metadataRows(viewer: SseStreamViewer): Array<[string, string]> {
  const list = part(viewer, '[part="metadata"]');
  return [...list.querySelectorAll('dt')].map((dt) => [dt.textContent ?? '', dt.nextElementSibling?.textContent ?? '']);
}

async function viewerWithDone(parentNode: HTMLElement, metadata: Record<string, unknown>): Promise<SseStreamViewer> {
  const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect></sse-stream-viewer>`, { parentNode });
  const stream = await server.nextStream();
  const finished = oneEvent(viewer, 'done');
  stream.event('connected', connected()).event('done', done('rewrite', 'The end.', metadata), '1-0');
  await finished;
  await viewer.updateComplete;
  return viewer;
}

const METADATA = {
  tokens_used: 3817,
  latency_ms: 3817,
  models: ['gpt-4o', 'claude-3'],
  steps: [{ name: 'draft', ms: 12 }, 'polish'],
  cache_hit: true,
  prompt_version: 'v2',
};

scriptedServerPerTest((next) => (server = next));

describe('<sse-stream-viewer> labels', () => {
  it('deep-merges `labels` over the language’s: one state label overridden, the others kept', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite"></sse-stream-viewer>`);
    viewer.labels = { state: { open: 'On air' }, status: { completed: 'Finished' } };
    await viewer.updateComplete;
    expect(badge(viewer), 'the closed label is still the default').to.equal('Closed');
    expect(part(viewer, '[part="connect-button"]').textContent, 'top-level labels are kept').to.equal('Connect');

    part(viewer, '[part="connect-button"]').click();
    const stream = await server.nextStream();
    stream.event('connected', connected()).event('stage_update', stageUpdate('rewrite', 'completed', 100, ''), '1-0');
    await oneEvent(viewer, 'stage_update');
    await viewer.updateComplete;
    expect(badge(viewer)).to.equal('On air');
    expect(part(viewer, '[part="status"]').textContent).to.equal('Finished');
  });

  it('merges over Chinese under lang="zh", and a function label replaces the default', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite"></sse-stream-viewer>`, {
      parentNode: wrapperDiv({ lang: 'zh' }),
    });
    viewer.labels = { state: { open: '直播中' }, stage: (name) => `«${name}»` };
    await viewer.updateComplete;
    expect(badge(viewer)).to.equal('已关闭');
    expect(part(viewer, '[part="stage-title"]').textContent).to.equal('«rewrite»');
  });
});

describe('<sse-stream-viewer> lang', () => {
  it('relabels at once when an ancestor’s lang changes, or an ancestor in between gains one', async () => {
    const outer = wrapperDiv({ lang: 'en' });
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite"></sse-stream-viewer>`, { parentNode: outer });
    // An ancestor in between, without a lang yet (moving the viewer re-attaches it).
    const inner = document.createElement('section');
    outer.insertBefore(inner, viewer);
    inner.append(viewer);
    await viewer.updateComplete;
    expect(badge(viewer)).to.equal('Closed');

    outer.setAttribute('lang', 'zh-CN');
    await waitUntil(() => badge(viewer) === '已关闭', 'relabelled in Chinese without a message');
    expect(part(viewer, '[part="connect-button"]').textContent).to.equal('连接');

    inner.setAttribute('lang', 'en-GB');
    await waitUntil(() => badge(viewer) === 'Closed', 'the closer lang wins');
    inner.removeAttribute('lang');
    await waitUntil(() => badge(viewer) === '已关闭', 'back to the outer lang');
  });

  it('follows <html lang> too, and stops observing once removed from the page', async () => {
    const html_ = document.documentElement;
    const before = html_.getAttribute('lang');
    try {
      html_.setAttribute('lang', 'en');
      const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite"></sse-stream-viewer>`);
      expect(badge(viewer)).to.equal('Closed');
      html_.setAttribute('lang', 'zh');
      await waitUntil(() => badge(viewer) === '已关闭', 'relabelled from <html lang>');

      const parent = viewer.parentNode!;
      viewer.remove();
      let updates = 0;
      const requestUpdate = viewer.requestUpdate.bind(viewer);
      viewer.requestUpdate = (...args: Parameters<typeof requestUpdate>) => {
        updates++;
        requestUpdate(...args);
      };
      html_.setAttribute('lang', 'en');
      await new Promise((resolve) => setTimeout(resolve, 20)); // a MutationObserver would have run by now
      expect(updates, 'no observer is left behind').to.equal(0);

      parent.appendChild(viewer);
      await waitUntil(() => badge(viewer) === 'Closed', 'reads the lang again when attached');
    } finally {
      if (before === null) html_.removeAttribute('lang');
      else html_.setAttribute('lang', before);
    }
  });
});

describe('<sse-stream-viewer> done summary', () => {
  it('formats metadata: units for known keys, lists for arrays, humanised names for unknown keys', async () => {
    const viewer = await viewerWithDone(wrapperDiv({ lang: 'en' }), METADATA);
    expect(metadataRows(viewer)).to.deep.equal([
      ['Tokens', '3,817'],
      ['Latency', '3.8 s'],
      ['Models', 'gpt-4o, claude-3'],
      ['Steps', '{"name":"draft","ms":12}, polish'],
      ['Cache hit', 'yes'],
      ['Prompt version', 'v2'],
    ]);
    expect(part(viewer, '[part="metadata"] [data-key="latency_ms"]').textContent, 'the data-key hook keeps the raw key').to.equal('3.8 s');
  });

  it('formats it in Chinese, with 词元数 for the LLM’s tokens', async () => {
    const viewer = await viewerWithDone(wrapperDiv({ lang: 'zh-CN' }), { tokens_used: 3817, latency_ms: 3817, models: ['a', 'b'], duration_ms: 125_000 });
    expect(metadataRows(viewer)).to.deep.equal([
      ['词元数', '3,817'],
      ['耗时', '3.8 秒'],
      ['Models', 'a、b'],
      ['Duration', '2 分 5 秒'],
    ]);
  });
});

describe('<sse-stream-viewer> event log', () => {
  it('writes its lines in the viewer’s language, and rewrites them when lang changes', async () => {
    const wrapper = wrapperDiv({ lang: 'zh' });
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" stage-name="rewrite" auto-connect show-logs></sse-stream-viewer>`, {
      parentNode: wrapper,
    });
    const stream = await server.nextStream();
    const finished = oneEvent(viewer, 'done');
    stream
      .event('connected', connected('rewrite', true))
      .event('stage_update', stageUpdate('rewrite', 'processing', 10, ''), '1-0')
      .event('token', token('rewrite', 'ab', 'ab'), '2-0')
      .event('done', done('rewrite', 'ab'), '3-0');
    await finished;
    await viewer.updateComplete;
    const line = (type: string) => viewer.shadowRoot!.querySelector(`[part="log-list"] li[data-type="${type}"]`)?.textContent?.replace(/\s+/g, ' ').trim() ?? '';
    expect(line('state')).to.match(/state 已关闭 → 连接中$/);
    expect(line('connected')).to.match(/connected 已续传$/);
    expect(line('stage_update')).to.match(/stage_update \[rewrite\] 处理中 10%$/);
    expect(line('done')).to.match(/done \[rewrite\] 2 个字符$/);

    wrapper.setAttribute('lang', 'en');
    await waitUntil(() => line('done').endsWith('2 characters'), 'the lines already there are rewritten');
    expect(line('stage_update')).to.match(/processing 10%$/);
  });
});
