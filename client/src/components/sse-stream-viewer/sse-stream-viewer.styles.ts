import { css } from 'lit';

/** The light look's values of the private properties (the default). */
const light = css`
  color-scheme: light;
  --_bg: var(--sse-viewer-bg, #ffffff);
  --_fg: var(--sse-viewer-fg, #1f2328);
  --_muted: var(--sse-viewer-muted, #59636e);
  --_border: var(--sse-viewer-border, #d1d9e0);
  --_panel: var(--sse-viewer-panel-bg, #f6f8fa);
  --_accent: var(--sse-viewer-accent, #0969da);
  --_track: var(--sse-viewer-track, #d1d9e0);
  --_success-bg: var(--sse-viewer-success-bg, #dafbe1);
  --_success-fg: var(--sse-viewer-success-fg, #116329);
  --_warning-bg: var(--sse-viewer-warning-bg, #fff8c5);
  --_warning-fg: var(--sse-viewer-warning-fg, #6c4400);
  --_danger-bg: var(--sse-viewer-danger-bg, #ffebe9);
  --_danger-fg: var(--sse-viewer-danger-fg, #a40e26);
  --_neutral-bg: var(--sse-viewer-neutral-bg, #eaeef2);
  --_neutral-fg: var(--sse-viewer-neutral-fg, #393f46);
`;

/** The dark look's values of the private properties. */
const dark = css`
  color-scheme: dark;
  --_bg: var(--sse-viewer-bg, #0d1117);
  --_fg: var(--sse-viewer-fg, #e6edf3);
  --_muted: var(--sse-viewer-muted, #9198a1);
  --_border: var(--sse-viewer-border, #3d444d);
  --_panel: var(--sse-viewer-panel-bg, #151b23);
  --_accent: var(--sse-viewer-accent, #4493f8);
  --_track: var(--sse-viewer-track, #3d444d);
  --_success-bg: var(--sse-viewer-success-bg, #033a16);
  --_success-fg: var(--sse-viewer-success-fg, #aff5b4);
  --_warning-bg: var(--sse-viewer-warning-bg, #4d2d00);
  --_warning-fg: var(--sse-viewer-warning-fg, #f8e3a1);
  --_danger-bg: var(--sse-viewer-danger-bg, #5d0f12);
  --_danger-fg: var(--sse-viewer-danger-fg, #ffdcd7);
  --_neutral-bg: var(--sse-viewer-neutral-bg, #262c36);
  --_neutral-fg: var(--sse-viewer-neutral-fg, #d1d7e0);
`;

export default css`
  :host {
    /* Public knobs (--sse-viewer-*) with light defaults; the private --_* copies carry the resolved value. */
    ${light}
    --_radius: var(--sse-viewer-radius, 8px);

    display: block;
    box-sizing: border-box;
    color: var(--_fg);
    background: var(--_bg);
    font: var(--sse-viewer-font, 14px/1.5 system-ui, -apple-system, 'Segoe UI', 'PingFang SC', 'Microsoft YaHei', sans-serif);
    border: 1px solid var(--_border);
    border-radius: var(--_radius);
    padding: 12px;
  }

  /*
   * Dark: forced by \`color-scheme="dark"\`, or the OS preference unless forced light. Then the page's own scheme when
   * it declares one only (the states ColorSchemeController sets, under \`auto\`), over the OS preference.
   */
  :host([color-scheme='dark']) {
${dark}
  }

  @media (prefers-color-scheme: dark) {
    :host(:not([color-scheme='light'])) {
${dark}
    }
  }

  :host(:state(light)) {
${light}
  }

  :host(:state(dark)) {
${dark}
  }

  /* !important: a page rule such as \`sse-stream-viewer { display: block }\` must not defeat the hidden attribute. */
  :host([hidden]) {
    display: none !important;
  }

  *,
  *::before,
  *::after {
    box-sizing: inherit;
  }

  .header {
    display: flex;
    flex-wrap: wrap;
    align-items: center;
    gap: 8px;
  }

  .badge,
  .status {
    display: inline-flex;
    align-items: center;
    gap: 6px;
    padding: 2px 10px;
    border-radius: 999px;
    font-size: 0.85em;
    font-weight: 600;
    background: var(--_neutral-bg);
    color: var(--_neutral-fg);
  }

  .badge::before {
    content: '';
    width: 8px;
    height: 8px;
    border-radius: 50%;
    background: currentColor;
  }

  .badge[data-state='open'],
  .status[data-status='completed'] {
    background: var(--_success-bg);
    color: var(--_success-fg);
  }

  .badge[data-state='connecting'],
  .badge[data-state='reconnecting'],
  .status[data-status='processing'] {
    background: var(--_warning-bg);
    color: var(--_warning-fg);
  }

  .status[data-status='failed'] {
    background: var(--_danger-bg);
    color: var(--_danger-fg);
  }

  button {
    font: inherit;
    font-size: 0.85em;
    padding: 2px 12px;
    border: 1px solid var(--_border);
    border-radius: 6px;
    background: var(--_panel);
    color: var(--_fg);
    cursor: pointer;
  }

  button:focus-visible,
  .text:focus-visible,
  .log-list:focus-visible {
    outline: 2px solid var(--_accent);
    outline-offset: 2px;
  }

  .notice,
  .empty {
    margin: 8px 0 0;
    color: var(--_muted);
    /* Shown only after a moment: a fresh stream's snapshot usually arrives first, and then it never flashes. */
    animation: appear 0s linear 0.6s backwards;
  }

  @keyframes appear {
    from {
      visibility: hidden;
    }
  }

  .stage {
    margin-top: 12px;
    padding: 12px;
    border: 1px solid var(--_border);
    border-radius: var(--_radius);
    background: var(--_panel);
  }

  .stage-header {
    display: flex;
    align-items: center;
    justify-content: space-between;
    gap: 8px;
  }

  .stage-title {
    margin: 0;
    font-size: 1em;
    font-weight: 600;
  }

  .message {
    margin: 6px 0 0;
    color: var(--_muted);
  }

  .progress {
    display: flex;
    align-items: center;
    gap: 8px;
    margin-top: 8px;
  }

  .track {
    flex: 1;
    height: 6px;
    border-radius: 3px;
    background: var(--_track);
    overflow: hidden;
  }

  .fill {
    height: 100%;
    background: var(--_accent);
    transition: width 0.2s ease-out;
  }

  .progress-label {
    color: var(--_muted);
    font-size: 0.85em;
    font-variant-numeric: tabular-nums;
  }

  .text {
    margin-top: 8px;
    max-height: var(--sse-viewer-text-max-height, 24em);
    overflow-y: auto;
    white-space: pre-wrap;
    overflow-wrap: anywhere;
    font: var(--sse-viewer-text-font, inherit);
  }

  .text:empty:not(.streaming) {
    display: none;
  }

  .text.streaming::after {
    content: '▍';
    color: var(--_accent);
    animation: blink 1s steps(2, start) infinite;
  }

  @keyframes blink {
    to {
      visibility: hidden;
    }
  }

  @media (prefers-reduced-motion: reduce) {
    .text.streaming::after {
      animation: none;
    }
    .fill {
      transition: none;
    }
  }

  .done,
  .error {
    margin-top: 8px;
    padding: 8px;
    border-radius: 6px;
  }

  .done {
    background: var(--_success-bg);
    color: var(--_success-fg);
  }

  .error {
    background: var(--_danger-bg);
    color: var(--_danger-fg);
  }

  .metadata {
    display: grid;
    grid-template-columns: max-content minmax(0, 1fr);
    gap: 2px 12px;
    margin: 4px 0 0;
  }

  .metadata dt {
    font-weight: 600;
  }

  .metadata dd {
    margin: 0;
    overflow-wrap: anywhere;
    font-variant-numeric: tabular-nums;
  }

  .logs {
    margin-top: 12px;
  }

  .log-list {
    max-height: var(--sse-viewer-log-max-height, 12em);
    overflow-y: auto;
    margin: 4px 0 0;
    padding: 0;
    list-style: none;
    font: 12px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  }

  .log-list time {
    color: var(--_muted);
  }
`;
