// The subset of mocha's globals the browser tests use (@web/test-runner runs mocha; @types/mocha is not a dependency).
type MochaDone = (error?: unknown) => void;
type MochaFn = (this: { timeout(ms: number): void }, done: MochaDone) => void | Promise<unknown>;
type MochaHook = (this: { timeout(ms: number): void }) => void | Promise<unknown>;

declare function describe(title: string, body: () => void): void;
declare namespace describe {
  function only(title: string, body: () => void): void;
  function skip(title: string, body: () => void): void;
}
declare function it(title: string, test: MochaFn): void;
declare namespace it {
  function only(title: string, test: MochaFn): void;
  function skip(title: string, test: MochaFn): void;
}
declare function before(hook: MochaHook): void;
declare function after(hook: MochaHook): void;
declare function beforeEach(hook: MochaHook): void;
declare function afterEach(hook: MochaHook): void;
