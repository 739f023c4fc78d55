/**
 * The demo page: wires the kit's own elements to the controls. No framework: the point is that
 * `<sse-stream-viewer>` works in a plain page.
 */
import '../../client/src/define.js';
import { sharingMode, type SharingMode, type SseStreamViewer, type Transport } from '../../client/src/index.js';
import { ApiError, cutProject, getHealth, mintToken } from './api.js';
import { EventLog, summarize } from './event-log.js';
import { runPipeline, STAGES } from './pipeline.js';
import { emptyCounts, StreamAudit, type AuditCounts } from './stream-audit.js';
import { isValidId } from '../../protocol/ids.js';

type Viewer = SseStreamViewer;

/** The viewer's DOM events the page listens to: one per message, the state a fresh stream starts with, plus the connection's. */
const VIEWER_EVENTS = ['connected', 'snapshot', 'token', 'stage_update', 'progress', 'done', 'error', 'reset', 'disconnected'] as const;
const HEALTH_EVERY_MS = 5000;

function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`The demo page has no #${id}.`);
  return element as T;
}

const projectInput = byId<HTMLInputElement>('project-id');
const log = new EventLog(byId('event-log-body'));

/** Connection of a viewer as the page shows it. */
type SlotState = 'closed' | 'connecting' | 'open' | 'reconnecting' | 'failed';

/** A viewer of the page with what the page knows about it. */
interface Slot {
  name: 'single' | 'all' | 'auth';
  viewer: Viewer;
  audit: StreamAudit;
  /** The user asked for it to be connected. */
  wanted: boolean;
  stateBadge: HTMLElement;
}

const slots: Slot[] = (['single', 'all', 'auth'] as const).map((name) => ({
  name,
  viewer: byId<Viewer>(`${name}-viewer`),
  audit: new StreamAudit(),
  wanted: false,
  stateBadge: byId(`state-${name}`),
}));
const slot = (name: Slot['name']): Slot => slots.find((s) => s.name === name)!;

// ---- project id: from ?project=, else a fresh one, so two visitors do not share a project by accident ----

function initialProject(): string {
  const fromUrl = new URLSearchParams(location.search).get('project');
  if (fromUrl && isValidId(fromUrl)) return fromUrl;
  return `story-${Math.floor(1000 + Math.random() * 9000)}`;
}

function projectId(): string | undefined {
  const value = projectInput.value.trim();
  return isValidId(value) ? value : undefined;
}

function showProject(id: string): void {
  const url = new URL(location.href);
  url.searchParams.set('project', id);
  history.replaceState(null, '', url);
  byId<HTMLAnchorElement>('share-link').href = url.href;
  const stage = byId<HTMLSelectElement>('single-stage').value;
  byId('single-snippet').textContent = `<sse-stream-viewer project-id="${id}" stage-name="${stage}" auto-connect></sse-stream-viewer>`;
  byId('all-snippet').textContent = `<sse-stream-viewer project-id="${id}" auto-connect></sse-stream-viewer>`;
  for (const element of document.querySelectorAll('.project-ref')) element.textContent = id;
}

// ---- viewers ----

function setState(s: Slot, state: SlotState): void {
  s.stateBadge.dataset.state = state;
  s.stateBadge.textContent = state;
}

/** After `disconnected`: a retry is pending, or it was asked for (a new project or stage reconnects at once), or it failed. */
function disconnectedState(s: Slot, detail: Record<string, unknown>): SlotState {
  if (detail.willReconnect) return 'reconnecting';
  if (detail.reason === 'disconnect') return s.wanted ? 'connecting' : 'closed';
  return 'failed';
}

function renderCounters(): void {
  const total: AuditCounts = emptyCounts();
  for (const s of slots) for (const key of Object.keys(total) as Array<keyof AuditCounts>) total[key] += s.audit.counts[key];
  byId('counter-events').textContent = String(total.events);
  byId('counter-resumes').textContent = String(total.resumes);
  for (const key of ['gaps', 'duplicates'] as const) {
    const cell = byId(`counter-${key}`);
    cell.textContent = String(total[key]);
    cell.parentElement!.toggleAttribute('data-bad', total[key] > 0);
  }
}

function listen(s: Slot): void {
  for (const type of VIEWER_EVENTS) {
    s.viewer.addEventListener(type, (event) => {
      const detail: unknown = (event as CustomEvent).detail;
      const fields = (detail ?? {}) as Record<string, unknown>;
      const finding = s.audit.observe(type, detail);
      if (type === 'connected' || type === 'disconnected') soon(checkHealth);
      if (type === 'connected') setState(s, 'open');
      if (type === 'disconnected') setState(s, disconnectedState(s, fields));
      renderCounters();
      log.add({
        source: s.name,
        type,
        stage: typeof fields.stage === 'string' ? fields.stage : type === 'connected' ? 'all' : undefined,
        id: typeof fields.id === 'string' ? fields.id : undefined,
        summary: summarize(type, detail),
        flag: finding ?? (type === 'error' ? 'error' : undefined),
      });
    });
  }
}

/**
 * Connects a viewer to the project. A new project or stage starts a fresh audit; the same one keeps it,
 * since the viewer's client resumes from its last event id and must bring what it missed, once.
 */
/** `?transport=websocket` (or `auto`): the viewers reach the server over a WebSocket instead of SSE. */
const TRANSPORT: Transport = (['websocket', 'auto'] as const).find((t) => t === new URLSearchParams(location.search).get('transport')) ?? 'sse';

function connect(s: Slot, id: string, stage = s.viewer.stageName): void {
  s.viewer.transport = TRANSPORT;
  if (s.viewer.projectId !== id || s.viewer.stageName !== stage) {
    s.audit = new StreamAudit();
    renderCounters();
  }
  s.viewer.projectId = id;
  s.viewer.stageName = stage;
  // auto-connect: the element connects (and reconnects on a new project or stage) by itself, and shows no buttons of its own.
  s.viewer.autoConnect = true;
  s.viewer.hidden = false;
  s.wanted = true;
  if (s.stateBadge.dataset.state !== 'open') setState(s, 'connecting');
  s.viewer.connect();
}

function disconnect(s: Slot): void {
  s.wanted = false;
  s.viewer.disconnect();
  setState(s, 'closed');
}

for (const s of slots) listen(s);

byId('single-connect').addEventListener('click', () => {
  const id = projectId();
  if (id) connect(slot('single'), id, byId<HTMLSelectElement>('single-stage').value);
});
byId('single-disconnect').addEventListener('click', () => disconnect(slot('single')));
byId<HTMLSelectElement>('single-stage').addEventListener('change', (event) => {
  const single = slot('single');
  const stage = (event.target as HTMLSelectElement).value;
  const id = projectId();
  if (id) showProject(id);
  if (id && single.wanted) connect(single, id, stage);
  else single.viewer.stageName = stage;
});
byId('all-connect').addEventListener('click', () => {
  const id = projectId();
  if (id) connect(slot('all'), id);
});
byId('all-disconnect').addEventListener('click', () => disconnect(slot('all')));

projectInput.addEventListener('change', () => {
  const id = projectId();
  if (!id) return;
  showProject(id);
  for (const s of slots) if (s.wanted && s.name !== 'auth') connect(s, id);
  // A token is minted for one project: the authenticated viewer needs a new one.
  if (slot('auth').wanted) {
    disconnect(slot('auth'));
    showAuth('ok', [`Project changed: mint a token for "${id}" to watch it on the authenticated endpoint.`]);
  }
});

// ---- run the mock pipeline ----

const runButton = byId<HTMLButtonElement>('run');
const stopButton = byId<HTMLButtonElement>('stop');
const speedInput = byId<HTMLInputElement>('speed');
const runStatus = byId('run-status');
let running: AbortController | undefined;

function status(element: HTMLElement, text: string, tone: 'ok' | 'bad' | '' = ''): void {
  element.textContent = text;
  element.dataset.tone = tone;
}

speedInput.addEventListener('input', () => {
  const text = `${speedInput.value}×`;
  byId('speed-value').textContent = text;
  // Read out as "5×", not "5": the slider's name is "Speed", its value the multiplier.
  speedInput.setAttribute('aria-valuetext', text);
});

byId<HTMLFormElement>('run-form').addEventListener('submit', (event) => {
  event.preventDefault();
  void run();
});
stopButton.addEventListener('click', () => running?.abort());

/**
 * On a narrow screen the viewers sit below every control, far under the Run button: scroll the one that shows
 * the run into view, so pressing Run shows the text stream. Nothing moves when its top is on screen already
 * (beside the controls on a wide screen).
 */
function revealViewer(): void {
  const target = [slot('all'), slot('single')].find((s) => s.wanted);
  if (!target) return;
  const top = target.viewer.getBoundingClientRect().top;
  if (top >= 0 && top < innerHeight * 0.75) return;
  target.viewer.closest('.card')?.scrollIntoView({ block: 'start' });
}

async function run(): Promise<void> {
  const id = projectId();
  if (!id) {
    status(runStatus, 'The project id is 1-64 letters, digits, "_" or "-".', 'bad');
    projectInput.focus();
    return;
  }
  if (running) return;
  const choice = byId<HTMLSelectElement>('run-stage').value;
  const stages = choice === 'pipeline' ? STAGES : [choice];
  revealViewer();
  const abort = new AbortController();
  running = abort;
  runButton.disabled = true;
  stopButton.hidden = false;
  const started = performance.now();
  status(runStatus, `Starting ${stages[0]}…`);
  try {
    const result = await runPipeline({
      projectId: id,
      stages,
      speed: Number(speedInput.value),
      fail: byId<HTMLInputElement>('fail').checked,
      signal: abort.signal,
      transport: TRANSPORT,
      onProgress: (progress) => {
        if (progress.kind === 'started') {
          status(runStatus, stages.length > 1 ? `Running ${progress.stage} (${progress.index + 1}/${progress.total})…` : `Running ${progress.stage}…`);
        }
      },
    });
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    if (result.outcome === 'completed') status(runStatus, `${stages.length > 1 ? 'Pipeline' : stages[0]} completed in ${seconds} s.`, 'ok');
    else if (result.outcome === 'failed') status(runStatus, `${result.stage} failed after ${seconds} s${stages.length > 1 ? ': the pipeline stopped there' : ''}.`, 'bad');
    else status(runStatus, 'Stopped waiting. A stage already started finishes on the server.');
  } catch (error) {
    status(runStatus, error instanceof ApiError ? error.message : String(error), 'bad');
  } finally {
    running = undefined;
    runButton.disabled = false;
    stopButton.hidden = true;
  }
}

// ---- cut the connection ----

/**
 * The server counts the streams it ended, which is not what the page shows: shared (the default), this browser's
 * viewers and the pipeline's own watcher (opened by Run while it waits for each stage, see pipeline.ts) are
 * subscriptions on one connection, counted once; with sharing off each is a stream. Say what was in the count.
 */
function describeCut(cut: number): string {
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const viewers = slots.filter((s) => s.wanted).length;
  const clients = [...(viewers ? [`this page's ${plural(viewers, 'viewer')}`] : []), ...(running ? ["the Run button's own watcher"] : [])];
  const shared = sharingMode() !== 'off';
  const ours = shared ? Math.min(1, clients.length) : viewers + (running ? 1 : 0);
  const elsewhere = cut - ours;
  if (clients.length === 0 || elsewhere < 0) return `Cut ${plural(cut, 'stream')}`;
  const list = clients.join(' and ');
  const own = shared ? `this browser's shared connection, carrying ${list}` : list;
  return `Cut ${plural(cut, 'stream')} (${own}${elsewhere ? `; ${elsewhere} more from other browsers or clients` : ''})`;
}

const cutStatus = byId('cut-status');
byId('cut').addEventListener('click', async () => {
  const id = projectId();
  if (!id) return;
  try {
    const { cut } = await cutProject(id);
    status(cutStatus, cut === 0 ? 'No open stream to cut: connect a viewer first.' : `${describeCut(cut)}: watch them resume.`, cut ? 'ok' : '');
  } catch (error) {
    status(cutStatus, error instanceof ApiError ? error.message : String(error), 'bad');
  }
});

// ---- authenticated stream ----

const authNotice = byId('auth-status');

/** Shows paragraphs, and a command block when `command` is given. */
function showAuth(tone: 'ok' | 'bad', lines: string[], command?: string): void {
  authNotice.hidden = false;
  authNotice.dataset.tone = tone;
  authNotice.replaceChildren(
    ...lines.map((line) => Object.assign(document.createElement('p'), { textContent: line })),
    ...(command ? [Object.assign(document.createElement('pre'), { textContent: command })] : []),
  );
}

byId('auth-connect').addEventListener('click', async () => {
  const id = projectId();
  if (!id) return;
  const auth = slot('auth');
  try {
    const minted = await mintToken(id);
    let current = { token: minted.token, until: Date.now() + (minted.expires_in - 30) * 1000 };
    // The element asks before every connection attempt: a reconnect after the token expired gets a fresh one.
    auth.viewer.token = async () => {
      if (Date.now() >= current.until) {
        const fresh = await mintToken(id);
        current = { token: fresh.token, until: Date.now() + (fresh.expires_in - 30) * 1000 };
      }
      return current.token;
    };
    connect(auth, id);
    showAuth('ok', [
      `Token for project "${id}", valid ${Math.round(minted.expires_in / 60)} minutes: ${minted.token.slice(0, 24)}…`,
      `The viewer streams /api/v1/sse/projects/${id}/stream/ with "Authorization: Bearer <token>".`,
    ]);
  } catch (error) {
    if (error instanceof ApiError && error.code === 'auth_not_configured') {
      showAuth('bad', [`The server says: ${error.message}`, 'Restart it with a secret to enable the authenticated endpoints:'], 'SSE_AUTH_SECRET=dev-secret-at-least-32-bytes-long npm start');
    } else {
      showAuth('bad', [error instanceof ApiError ? `The server says: ${error.message}` : String(error)]);
    }
  }
});
byId('auth-disconnect').addEventListener('click', () => disconnect(slot('auth')));

// ---- event log ----

byId('log-clear').addEventListener('click', () => log.clear());
byId<HTMLInputElement>('log-pause').addEventListener('change', (event) => {
  log.paused = (event.target as HTMLInputElement).checked;
});

// ---- server health ----

let healthTimer: ReturnType<typeof setTimeout> | undefined;
/** Runs `fn` once after a burst of calls (the stream count changes in bursts: a cut reconnects every viewer). */
function soon(fn: () => Promise<void>): void {
  clearTimeout(healthTimer);
  healthTimer = setTimeout(() => void fn(), 400);
}

const health = byId('health');
/** How this page's viewers reach the server (see configureSharing in the client kit). */
const SHARING_TEXT: Record<SharingMode, [short: string, long: string]> = {
  auto: ['connecting…', 'connecting…'],
  worker: ['1 connection', 'every viewer of every tab shares one connection, held by a SharedWorker'],
  leader: ['1 connection', 'every viewer of every tab shares one connection, held by a leader tab (no SharedWorker here)'],
  page: ['1 per page', "this page's viewers share one connection (no SharedWorker or Web Locks here)"],
  off: ['1 per viewer', 'each viewer has a connection of its own'],
};
async function checkHealth(): Promise<void> {
  try {
    const h = await getHealth();
    const broker = h.broker === 'redis' ? 'Redis' : 'embedded broker';
    health.dataset.state = h.status === 'ok' ? 'ok' : 'down';
    const mode = sharingMode();
    health.dataset.sharing = mode;
    const [short, long] = SHARING_TEXT[mode];
    health.dataset.transport = TRANSPORT;
    byId('health-text').textContent = h.status === 'ok' ? `${broker} · ${short}` : `${broker} unavailable`;
    health.title = `${long}. GET /healthz → ${JSON.stringify(h)}`;
  } catch {
    health.dataset.state = 'down';
    byId('health-text').textContent = 'server unreachable';
  }
}
void checkHealth();
setInterval(() => {
  if (document.visibilityState === 'visible') void checkHealth();
}, HEALTH_EVERY_MS);

// ---- start: both public viewers watch the project right away ----

for (const element of document.querySelectorAll('.origin-ref')) element.textContent = location.origin;
const first = initialProject();
projectInput.value = first;
showProject(first);
connect(slot('single'), first);
connect(slot('all'), first);
