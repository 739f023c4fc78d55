/**
 * A React 19 component that shows one stage live with `<sse-stream-viewer>`. React 19 passes attributes and
 * properties to custom elements and listens to their events through `on<event>` props named exactly after
 * the event: `ondone`, `onstage_update`, `onerror` — all lowercase: `onError` is React's own synthetic
 * event and never hears the element's `error`. `ai-story-sse/react` types the tag for JSX.
 */
import { useState } from 'react';
import type { DoneMessage } from 'ai-story-sse';
import type {} from 'ai-story-sse/react';
import 'ai-story-sse/define';

export interface StageViewerProps {
  projectId: string;
  stage?: string;
  onFinished?: (message: DoneMessage) => void;
}

export function StageViewer({ projectId, stage = 'rewrite', onFinished }: StageViewerProps) {
  const [status, setStatus] = useState('waiting for the worker');
  const [result, setResult] = useState('');
  return (
    <section>
      <p className="status">{status}</p>
      <sse-stream-viewer
        project-id={projectId}
        stage-name={stage}
        auto-connect
        onstage_update={(event) => setStatus(`${event.detail.status} · ${event.detail.progress}%`)}
        onerror={(event) => setStatus(`failed: ${event.detail.error}`)}
        ondone={(event) => {
          setResult(`Done: ${event.detail.full_text.length} characters, ${String(event.detail.metadata.tokens_used)} tokens.`);
          onFinished?.(event.detail);
        }}
      />
      {result && <p id="result">{result}</p>}
    </section>
  );
}
