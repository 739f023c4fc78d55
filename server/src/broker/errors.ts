/** The few errors the broker, publisher and subscriber throw. Each message says how to fix the misuse. */

/**
 * The broker could not be reached within its time bound, or the connection dropped before Redis answered.
 *
 * `sent` tells the caller whether retrying is safe: `false` means the command never left this process
 * (nothing happened); `true` means it was written to Redis but no answer came back, so it may have taken effect.
 */
export class BrokerUnavailableError extends Error {
  override readonly name = 'BrokerUnavailableError';
  readonly sent: boolean;

  constructor(message: string, options: { sent: boolean; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.sent = options.sent;
  }
}

/** The broker (or the publisher or subscriber that owns it) was closed; create a new one. */
export class BrokerClosedError extends Error {
  override readonly name = 'BrokerClosedError';

  constructor(what = 'broker') {
    super(`the ${what} is closed; create a new one`);
  }
}

/** An argument that would corrupt a channel name, a key or a message. Thrown before anything is sent. */
export class InvalidArgumentError extends TypeError {
  override readonly name = 'InvalidArgumentError';
  /** The name of the offending argument or option. */
  readonly argument: string;

  constructor(argument: string, message: string) {
    super(`${argument}: ${message}`);
    this.argument = argument;
  }
}

/**
 * A subscriber's buffer overflowed because nobody read it: it was unsubscribed rather than grow without bound.
 * Read with `listen()` or `getMessage()` faster, or raise `maxBuffered`.
 */
export class SubscriberOverflowError extends Error {
  override readonly name = 'SubscriberOverflowError';

  constructor(maxBuffered: number) {
    super(`more than ${maxBuffered} unread messages: the subscriber was unsubscribed; read faster or raise maxBuffered`);
  }
}

/**
 * A linear token (a piece and its offset) that does not continue its stage's text: a token was lost, or sent
 * twice. Nothing was logged or published. Publish from offset `expected`, start the stage over at offset 0, or
 * pass the whole text so far (`wholeText`) to set it.
 */
export class TokenOffsetError extends Error {
  override readonly name = 'TokenOffsetError';
  /** The stage whose text the token was meant to continue. */
  readonly stage: string;
  /** The length of the stage's text so far, in UTF-16 code units: the offset a token that continues it has. */
  readonly expected: number;
  /** The offset the token had. */
  readonly got: number;

  constructor(stage: string, expected: number, got: number) {
    super(
      `token offset ${got} does not continue the text of stage ${JSON.stringify(stage)}, which has ${expected} UTF-16 code units: ` +
        `a token was lost or sent twice; publish from offset ${expected}, start over at offset 0, or pass the whole text`,
    );
    this.stage = stage;
    this.expected = expected;
    this.got = got;
  }
}

/**
 * The stage was cancelled (`POST …/stages/{stage}/cancel/`): nothing was published. Stop the work; the publisher
 * may still send a closing message (`publishCancelled`, or any publish with `final`).
 */
export class StageCancelledError extends Error {
  override readonly name = 'StageCancelledError';
  readonly stage: string;

  constructor(stage: string) {
    super(`stage ${JSON.stringify(stage)} was cancelled: stop the work (nothing was published)`);
    this.stage = stage;
  }
}

/**
 * The publisher's lease on the stage expired (no publish or heartbeat within the lease) and a hub marked the
 * stage lost with a worker-lost error: this run may not write into it any more. Nothing was published.
 */
export class LeaseLostError extends Error {
  override readonly name = 'LeaseLostError';
  readonly stage: string;

  constructor(stage: string) {
    super(`the lease on stage ${JSON.stringify(stage)} expired and the stage was marked lost (worker_lost); this run may not publish into it any more`);
    this.stage = stage;
  }
}
