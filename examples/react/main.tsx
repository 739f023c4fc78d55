import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { StageViewer } from './StageViewer.js';

const projectId = new URLSearchParams(location.search).get('project') ?? 'example';

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <h1>Rewrite, live (React)</h1>
    <StageViewer projectId={projectId} />
  </StrictMode>,
);
