import { expect } from '@open-wc/testing';
import { StageStore, type TextChange } from './stage-store.js';
import { done, failure, progress, snapshot, stageUpdate, token } from '../test/fixtures.js';

function store(): { store: StageStore; changes: Array<[string, TextChange]> } {
  const changes: Array<[string, TextChange]> = [];
  return { store: new StageStore((stage, change) => changes.push([stage, change])), changes };
}

describe('StageStore', () => {
  it('appends token content while it agrees with full_text', () => {
    const { store: stages, changes } = store();
    expect(stages.apply(token('rewrite', 'Once', 'Once')), 'a new stage re-renders').to.equal(true);
    expect(stages.apply(token('rewrite', 'Once upon', ' upon')), 'a plain token does not').to.equal(false);
    expect(stages.get('rewrite')?.text).to.equal('Once upon');
    expect(stages.get('rewrite')?.status).to.equal('processing');
    expect(changes).to.deep.equal([
      ['rewrite', { kind: 'append', text: 'Once' }],
      ['rewrite', { kind: 'append', text: ' upon' }],
    ]);
  });

  it('replaces the text when full_text disagrees (a missed token)', () => {
    const { store: stages, changes } = store();
    stages.apply(token('rewrite', 'a', 'a'));
    stages.apply(token('rewrite', 'abc', 'c'));
    expect(changes.at(-1)).to.deep.equal(['rewrite', { kind: 'replace', text: 'abc' }]);
  });

  it('takes done.full_text as the final text and marks the stage completed', () => {
    const { store: stages } = store();
    stages.apply(token('rewrite', 'dra', 'dra'));
    stages.apply(done('rewrite', 'draft', { tokens_used: 2 }));
    expect(stages.get('rewrite')).to.deep.include({ text: 'draft', status: 'completed' });
  });

  it('marks a stage failed on error and starts over when it runs again', () => {
    const { store: stages } = store();
    stages.apply(token('storyboard', 'x', 'x'));
    stages.apply(failure('storyboard', 'boom', 1));
    expect(stages.get('storyboard')?.status).to.equal('failed');
    stages.apply(stageUpdate('storyboard', 'processing', 0, 'again'));
    expect(stages.get('storyboard')).to.deep.include({ status: 'processing', text: '', error: undefined, done: undefined });
  });

  it('lists stages in pipeline order, unknown ones after in order of appearance', () => {
    const { store: stages } = store();
    for (const name of ['zeta', 'video_generation', 'alpha', 'rewrite']) stages.apply(stageUpdate(name, 'pending', 0, ''));
    expect(stages.list().map((stage) => stage.name)).to.deep.equal(['rewrite', 'video_generation', 'zeta', 'alpha']);
  });

  it('restores from a reset snapshot by replaying each stage chronologically', () => {
    const { store: stages } = store();
    stages.apply(token('old', 'gone', 'gone'));
    stages.restore({
      rewrite: {
        done: { ...done('rewrite', 'final'), timestamp: 3 },
        stage_update: { ...stageUpdate('rewrite', 'completed', 100, 'ok'), timestamp: 2 },
        token: { ...token('rewrite', 'fina', 'a'), timestamp: 1 },
      },
      image_generation: { progress: progress('image_generation', 1, 2, 'a.png') },
    });
    expect(stages.get('old')).to.equal(undefined);
    expect(stages.get('rewrite')).to.deep.include({ text: 'final', status: 'completed', message: 'ok' });
    expect(stages.get('image_generation')?.progress?.current).to.equal(1);
  });

  it('restores only one stage when asked', () => {
    const { store: stages } = store();
    stages.restore({ rewrite: { token: token('rewrite', 'a', 'a') }, storyboard: { token: token('storyboard', 'b', 'b') } }, 'storyboard');
    expect(stages.list().map((stage) => stage.name)).to.deep.equal(['storyboard']);
  });

  it('applies a snapshot at once: status, progress, text (one replace per stage), done and error', () => {
    const { store: stages, changes } = store();
    stages.apply(token('old', 'gone', 'gone'));
    changes.length = 0;
    const { stages: state } = snapshot({
      rewrite: { stage_update: stageUpdate('rewrite', 'completed', 100, 'Rewrite finished'), done: done('rewrite', 'The end', { tokens_used: 3 }) },
      storyboard: { stage_update: stageUpdate('storyboard', 'processing', 40, 'Drawing'), progress: progress('storyboard', 2, 5, 'panel 2'), text: 'Panel one, panel' },
      image_generation: { error: failure('image_generation', 'boom', 2) },
    });
    stages.restoreSnapshot(state);

    expect(stages.list().map((stage) => stage.name)).to.deep.equal(['rewrite', 'storyboard', 'image_generation']);
    expect(stages.get('rewrite')).to.deep.include({ status: 'completed', text: 'The end', message: 'Rewrite finished' });
    expect(stages.get('storyboard')).to.deep.include({ status: 'processing', text: 'Panel one, panel', stageProgress: 40, message: 'Drawing' });
    expect(stages.get('storyboard')?.progress?.current).to.equal(2);
    expect(stages.get('image_generation')).to.deep.include({ status: 'failed', text: '' });
    expect(stages.get('old'), 'what came before is gone').to.equal(undefined);
    expect(changes).to.deep.equal([
      ['old', { kind: 'replace', text: '' }],
      ['rewrite', { kind: 'replace', text: 'The end' }],
      ['storyboard', { kind: 'replace', text: 'Panel one, panel' }],
    ]);
  });

  it('continues a snapshot\'s text with the next token, appending', () => {
    const { store: stages, changes } = store();
    stages.restoreSnapshot(snapshot({ rewrite: { text: 'Once upon' } }).stages);
    expect(stages.get('rewrite')?.status, 'a stage with text runs').to.equal('processing');
    expect(stages.apply(token('rewrite', 'Once upon a', ' a'))).to.equal(false);
    expect(changes.at(-1)).to.deep.equal(['rewrite', { kind: 'append', text: ' a' }]);
  });
});
