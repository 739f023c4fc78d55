// Light or dark: the `color-scheme` attribute forces one; `auto` follows the page's CSS color-scheme when it names
// one scheme only, else the OS preference. Checked on the computed background.
import { expect, fixture, html } from '@open-wc/testing';
import { emulateMedia } from '@web/test-runner-commands';
import '../../define.js';
import type { SseStreamViewer } from './sse-stream-viewer.component.js';
import { onlyScheme } from '../../color-scheme-controller.js';

const LIGHT = 'rgb(255, 255, 255)';
const DARK = 'rgb(13, 17, 23)';
const background = (viewer: SseStreamViewer) => getComputedStyle(viewer).backgroundColor;

function wrapperDiv(style = ''): HTMLDivElement {
  const wrapper = document.createElement('div');
  wrapper.setAttribute('style', style);
  return wrapper;
}

describe('<sse-stream-viewer> color-scheme', () => {
  afterEach(() => emulateMedia({ colorScheme: 'light' }));

  it('follows the OS under auto (the default) when the page declares no scheme', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1"></sse-stream-viewer>`);
    expect(viewer.colorScheme).to.equal('auto');
    expect(background(viewer)).to.equal(LIGHT);
    await emulateMedia({ colorScheme: 'dark' });
    expect(background(viewer)).to.equal(DARK);
    expect(getComputedStyle(viewer).colorScheme, 'native bits follow the look').to.equal('dark');
  });

  it('forces dark on a light OS and light on a dark OS', async () => {
    const dark = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" color-scheme="dark"></sse-stream-viewer>`);
    expect(background(dark)).to.equal(DARK);
    await emulateMedia({ colorScheme: 'dark' });
    const light = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1" color-scheme="light"></sse-stream-viewer>`);
    expect(background(light)).to.equal(LIGHT);
    light.colorScheme = 'auto';
    await light.updateComplete;
    expect(background(light), 'back to the OS').to.equal(DARK);
  });

  it('stays light on a dark OS when the page says `color-scheme: light` (on :root or around the viewer)', async () => {
    await emulateMedia({ colorScheme: 'dark' });
    const root = document.documentElement;
    const before = root.style.colorScheme;
    root.style.colorScheme = 'light';
    try {
      const onRoot = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1"></sse-stream-viewer>`);
      expect(background(onRoot)).to.equal(LIGHT);
      onRoot.colorScheme = 'dark';
      await onRoot.updateComplete;
      expect(background(onRoot), 'the attribute still wins').to.equal(DARK);
    } finally {
      root.style.colorScheme = before;
    }
    const around = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1"></sse-stream-viewer>`, { parentNode: wrapperDiv('color-scheme: only light') });
    expect(background(around)).to.equal(LIGHT);
    const both = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1"></sse-stream-viewer>`, { parentNode: wrapperDiv('color-scheme: light dark') });
    expect(background(both), 'a page with both follows the OS').to.equal(DARK);
  });

  it('goes dark on a light OS when the page says only dark', async () => {
    const viewer = await fixture<SseStreamViewer>(html`<sse-stream-viewer project-id="1"></sse-stream-viewer>`, { parentNode: wrapperDiv('color-scheme: dark') });
    expect(background(viewer)).to.equal(DARK);
  });

  it('reads which scheme a color-scheme value names alone', () => {
    expect(['light', 'only light', 'dark', 'light dark', 'dark light', 'normal', ''].map(onlyScheme)).to.deep.equal([
      'light',
      'light',
      'dark',
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
  });
});
