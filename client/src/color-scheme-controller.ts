/**
 * The page's colour scheme, as a Lit ReactiveController, for a host whose `color-scheme` attribute is `auto`: when
 * the page's CSS `color-scheme` where the host sits names one scheme only (`:root { color-scheme: light }`, or
 * `<meta name="color-scheme" content="light">`), the host gets the custom state `light` (or `dark`), which its
 * styles honour over the OS preference (`prefers-color-scheme`, followed by CSS alone). `light` and `dark` in the
 * attribute are CSS alone too.
 *
 * The page's scheme is read when the host is attached and when its attribute changes; a page that switches its
 * own theme later sets `color-scheme` on the element.
 */
import type { ReactiveController, ReactiveControllerHost } from 'lit';

/** The values of the `color-scheme` attribute. */
export type ColorSchemeSetting = 'auto' | 'light' | 'dark';

export interface ColorSchemeHost extends ReactiveControllerHost, HTMLElement {
  colorScheme: ColorSchemeSetting;
}

/** `light` or `dark` when a CSS `color-scheme` value names only that one; undefined for `normal` or both. */
export function onlyScheme(value: string | null | undefined): 'light' | 'dark' | undefined {
  const words = (value ?? '').toLowerCase().split(/\s+/);
  const light = words.includes('light');
  const dark = words.includes('dark');
  return light === dark ? undefined : light ? 'light' : 'dark';
}

/** The scheme the page declares where `host` sits, when it declares only one. */
export function pageScheme(host: HTMLElement): 'light' | 'dark' | undefined {
  // The parent's value: the host's own `color-scheme` comes from its styles, which follow this very result.
  const root = host.getRootNode();
  const parent = host.parentElement ?? (root instanceof ShadowRoot ? root.host : host.ownerDocument.documentElement);
  const inherited = getComputedStyle(parent).colorScheme;
  if (inherited && inherited !== 'normal') return onlyScheme(inherited);
  return onlyScheme(host.ownerDocument.querySelector<HTMLMetaElement>('meta[name="color-scheme"]')?.content);
}

export class ColorSchemeController implements ReactiveController {
  readonly #host: ColorSchemeHost;
  readonly #states: CustomStateSet | undefined;
  #setting: ColorSchemeSetting | undefined;

  /** `internals`: the host's ElementInternals, whose custom states carry the result. */
  constructor(host: ColorSchemeHost, internals: ElementInternals) {
    this.#host = host;
    // Browsers without custom states (before 2024) follow the attribute and the OS preference only.
    this.#states = supportsStates(internals) ? internals.states : undefined;
    host.addController(this);
  }

  hostConnected(): void {
    this.#apply();
  }

  hostUpdate(): void {
    if (this.#host.colorScheme !== this.#setting) this.#apply();
  }

  #apply(): void {
    const host = this.#host;
    this.#setting = host.colorScheme;
    const states = this.#states;
    if (!states || !host.isConnected) return;
    const page = host.colorScheme === 'light' || host.colorScheme === 'dark' ? undefined : pageScheme(host);
    for (const scheme of ['light', 'dark'] as const) {
      if (scheme === page) states.add(scheme);
      else states.delete(scheme);
    }
  }
}

function supportsStates(internals: ElementInternals): boolean {
  try {
    internals.states.add('light');
    internals.states.delete('light');
    return true;
  } catch {
    return false; // missing, or only the older `--light` syntax
  }
}
