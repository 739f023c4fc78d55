/**
 * The language in effect for an element, as a Lit ReactiveController: the closest `lang` attribute (crossing
 * shadow roots), else the document's. A MutationObserver on the `lang` of the element and of each of its ancestors
 * re-renders the host as soon as it changes (on `<html>`, or on any element in between that gains or loses one),
 * not at its next message; it is disconnected when the host leaves the page.
 */
import type { ReactiveController, ReactiveControllerHost } from 'lit';

/** The element, then its ancestors up to the document's root element, crossing shadow roots. */
function* ancestry(element: Element): Generator<Element> {
  for (let node: Node | null = element; node; node = node.parentNode ?? (node instanceof ShadowRoot ? node.host : null)) {
    if (node instanceof ShadowRoot) node = node.host;
    if (node instanceof Element) yield node;
  }
}

/** The closest `lang`, crossing shadow roots, else the document's. */
export function langOf(element: Element): string {
  for (const node of ancestry(element)) if (node.hasAttribute('lang')) return node.getAttribute('lang') ?? '';
  return element.ownerDocument.documentElement.lang;
}

export class LangController implements ReactiveController {
  readonly #host: ReactiveControllerHost & Element;
  readonly #observer: MutationObserver;
  #lang: string;

  constructor(host: ReactiveControllerHost & Element) {
    this.#host = host;
    this.#lang = langOf(host);
    this.#observer = new MutationObserver(() => this.#refresh());
    host.addController(this);
  }

  /** The language tag in effect, e.g. `zh-CN`; `''` when none is set. */
  get value(): string {
    return this.#lang;
  }

  hostConnected(): void {
    // Every ancestor, not just the closest one with `lang`: one in between may gain a `lang` later.
    for (const node of ancestry(this.#host)) this.#observer.observe(node, { attributes: true, attributeFilter: ['lang'] });
    this.#refresh();
  }

  hostDisconnected(): void {
    this.#observer.disconnect();
  }

  #refresh(): void {
    const lang = langOf(this.#host);
    if (lang === this.#lang) return;
    this.#lang = lang;
    this.#host.requestUpdate();
  }
}
