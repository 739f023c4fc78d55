/**
 * Polls a condition until it holds: for state that has no event to wait on (Redis counters, hub size, a
 * process's health). The one polling helper of the tests. `what` says what is awaited; pass a function when
 * the timeout error should show state read at that moment (the lines logged so far, a child's output).
 */
export async function waitUntil(check: () => Promise<boolean> | boolean, what: string | (() => string), timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${typeof what === 'function' ? what() : what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
