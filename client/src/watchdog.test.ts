import { expect } from '@open-wc/testing';
import { FakeClock } from '../test/fake-clock.js';
import { Watchdog } from './watchdog.js';

describe('Watchdog', () => {
  it('fires exactly limitMs after start() when nothing arrives', () => {
    const clock = new FakeClock();
    let fired = 0;
    new Watchdog(clock, 1000, () => fired++).start();
    clock.tick(999);
    expect(fired).to.equal(0);
    clock.tick(1);
    expect(fired).to.equal(1);
    clock.tick(5000);
    expect(fired, 'once, not again').to.equal(1);
    expect(clock.pending).to.equal(0);
  });

  it('counts the silence from the last feed(), with one timer at a time', () => {
    const clock = new FakeClock();
    let fired = 0;
    const watchdog = new Watchdog(clock, 1000, () => fired++);
    watchdog.start();
    clock.tick(600);
    watchdog.feed();
    clock.tick(600);
    watchdog.feed();
    expect(clock.pending).to.equal(1);
    clock.tick(999);
    expect(fired, '999 ms after the last byte').to.equal(0);
    clock.tick(1);
    expect(fired).to.equal(1);
  });

  it('never fires after stop(), and start() counts afresh', () => {
    const clock = new FakeClock();
    let fired = 0;
    const watchdog = new Watchdog(clock, 1000, () => fired++);
    watchdog.start();
    clock.tick(900);
    watchdog.stop();
    clock.tick(5000);
    expect(fired).to.equal(0);
    expect(clock.pending).to.equal(0);
    watchdog.start();
    watchdog.start();
    expect(clock.pending, 'a restart replaces the timer').to.equal(1);
    clock.tick(1000);
    expect(fired).to.equal(1);
  });

  it('is off with a limit of 0 or one that is not finite', () => {
    const clock = new FakeClock();
    for (const limit of [0, -1, Number.POSITIVE_INFINITY, Number.NaN]) new Watchdog(clock, limit, () => expect.fail(`fired with ${limit}`)).start();
    expect(clock.pending).to.equal(0);
  });
});
