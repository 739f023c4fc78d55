import { expect, fixture, html, oneEvent } from '@open-wc/testing';
import '../../define.js';
import type { SseStreamProvider } from './sse-stream-provider.component.js';
import type { SseStreamViewer } from '../sse-stream-viewer/sse-stream-viewer.component.js';
import { ScriptedServer, scriptedServerPerTest } from '../../../test/sse-server.js';
import { connected, done, token } from '../../../test/fixtures.js';

let server: ScriptedServer;

function textOf(viewer: SseStreamViewer, stage: string): string | null | undefined {
  return viewer.shadowRoot!.querySelector(`[data-stage="${stage}"] [part="text"]`)?.textContent;
}

function viewers(provider: SseStreamProvider): SseStreamViewer[] {
  return [...provider.querySelectorAll('sse-stream-viewer')];
}

scriptedServerPerTest((next) => (server = next));

describe('<sse-stream-provider>', () => {
  it('opens exactly one all-stages connection for several viewers, each filtering its stage', async () => {
    const provider = await fixture<SseStreamProvider>(html`
      <sse-stream-provider project-id="1">
        <sse-stream-viewer stage-name="rewrite" auto-connect></sse-stream-viewer>
        <sse-stream-viewer stage-name="storyboard" auto-connect></sse-stream-viewer>
        <sse-stream-viewer auto-connect></sse-stream-viewer>
      </sse-stream-provider>
    `);
    const [rewrite, storyboard, all] = viewers(provider) as [SseStreamViewer, SseStreamViewer, SseStreamViewer];
    const stream = await server.nextStream();
    expect(new URL(stream.request.url).pathname).to.equal('/api/v1/sse/projects/1/');

    const rewriteTokens: string[] = [];
    rewrite.addEventListener('token', (event) => rewriteTokens.push(event.detail.stage));
    const finished = Promise.all([oneEvent(storyboard, 'done'), oneEvent(all, 'done')]);
    stream
      .event('connected', connected(null))
      .event('token', token('rewrite', 'Once', 'Once'), '1-0')
      .event('token', token('storyboard', 'Scene', 'Scene'), '2-0')
      .event('done', done('storyboard', 'Scene 1'), '3-0');
    await finished;
    await Promise.all(viewers(provider).map((viewer) => viewer.textUpdateComplete()));

    expect(server.requests).to.have.length(1);
    expect(textOf(rewrite, 'rewrite')).to.equal('Once');
    expect(textOf(rewrite, 'storyboard'), 'the rewrite viewer shows only its stage').to.equal(undefined);
    expect(rewriteTokens).to.deep.equal(['rewrite']);
    expect(textOf(storyboard, 'storyboard')).to.equal('Scene 1');
    expect(textOf(all, 'rewrite')).to.equal('Once');
    expect(textOf(all, 'storyboard')).to.equal('Scene 1');
    for (const viewer of viewers(provider)) expect(viewer.connectionState).to.equal('open');
  });

  it('shows a late viewer the current state at once, without a new connection', async () => {
    const provider = await fixture<SseStreamProvider>(html`
      <sse-stream-provider project-id="1"><sse-stream-viewer stage-name="rewrite" auto-connect></sse-stream-viewer></sse-stream-provider>
    `);
    const stream = await server.nextStream();
    const arrived = oneEvent(viewers(provider)[0]!, 'token');
    stream.event('token', token('rewrite', 'So far', 'So far'), '1-0');
    await arrived;

    const late = document.createElement('sse-stream-viewer');
    late.stageName = 'rewrite';
    late.autoConnect = true;
    provider.append(late);
    await late.textUpdateComplete();
    expect(textOf(late, 'rewrite')).to.equal('So far');
    expect(server.requests).to.have.length(1);
  });

  it('closes the shared connection when its last viewer leaves, and reopens for a new one', async () => {
    const provider = await fixture<SseStreamProvider>(html`
      <sse-stream-provider project-id="1">
        <sse-stream-viewer stage-name="rewrite" auto-connect></sse-stream-viewer>
        <sse-stream-viewer stage-name="storyboard" auto-connect></sse-stream-viewer>
      </sse-stream-provider>
    `);
    const stream = await server.nextStream();
    stream.event('connected', connected(null), '1-0');
    await oneEvent(viewers(provider)[0]!, 'connected');
    const [first, second] = viewers(provider) as [SseStreamViewer, SseStreamViewer];

    first.remove();
    expect(provider.client!.state, 'one viewer still uses it').to.equal('open');
    second.disconnect();
    expect(provider.client!.state).to.equal('closed');

    second.connect();
    const again = await server.nextStream();
    expect(again.lastEventId, 'the shared client resumes').to.equal('1-0');
  });

  it('moves its viewers to a new connection when project-id changes', async () => {
    const provider = await fixture<SseStreamProvider>(html`
      <sse-stream-provider project-id="1"><sse-stream-viewer stage-name="rewrite" auto-connect></sse-stream-viewer></sse-stream-provider>
    `);
    await server.nextStream();
    const oldClient = provider.client!;
    provider.projectId = '2';
    const next = await server.nextStream();
    expect(new URL(next.request.url).pathname).to.equal('/api/v1/sse/projects/2/');
    expect(oldClient.state).to.equal('closed');
    expect(server.requests).to.have.length(2);
  });

  it('uses the authenticated endpoint when given a token', async () => {
    await fixture<SseStreamProvider>(html`
      <sse-stream-provider project-id="1" .token=${() => 'jwt'}><sse-stream-viewer auto-connect></sse-stream-viewer></sse-stream-provider>
    `);
    const stream = await server.nextStream();
    expect(new URL(stream.request.url).pathname).to.equal('/api/v1/sse/projects/1/stream/');
    expect(stream.request.headers.get('authorization')).to.equal('Bearer jwt');
  });
});
