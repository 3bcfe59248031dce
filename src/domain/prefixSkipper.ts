/**
 * When a step is restarted, the client may already hold the first part of the answer.
 * PrefixSkipper swallows restarted content while it repeats that part verbatim (common with
 * deterministic upstreams) and lets everything through from the first difference on.
 */
import type { Delta } from './chat';

export class PrefixSkipper {
  private matched = 0;
  private diverged: boolean;

  constructor(private readonly published: string) {
    this.diverged = published === '';
  }

  /** Whether everything published has been repeated (or passed) already. */
  get matchedAll(): boolean {
    return this.matched >= this.published.length;
  }

  pass(d: Delta): Delta | null {
    if (this.diverged || d.content === undefined) return d;
    const text = d.content;
    const want = this.published.slice(this.matched, this.matched + text.length);
    const common = commonPrefix(text, want);
    this.matched += common;
    if (common === text.length) {
      if (this.matched >= this.published.length) this.diverged = true;
      const { content: _drop, ...rest } = d;
      return Object.keys(rest).length > 0 ? rest : null;
    }
    this.diverged = true;
    // Past what was published, or different from it: from here on the client gets it all.
    return { ...d, content: text.slice(common) };
  }
}

function commonPrefix(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}
