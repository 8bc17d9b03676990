/**
 * Finds stop strings in streamed text. Text that could still become the start of a stop string is
 * held back, so a client never sees a partial stop string that later turns out to stop the
 * output. Pure; one instance per request.
 */
export class StopMatcher {
  readonly #stops: string[];
  #held = '';

  constructor(stops: readonly string[]) {
    this.#stops = stops.filter((s) => s.length > 0);
  }

  /**
   * Adds text; returns what may be emitted now and whether a stop string was found (in which case
   * the text before it is returned and everything after is dropped).
   */
  push(text: string): { emit: string; stopped: boolean } {
    const buf = this.#held + text;
    let first = -1;
    for (const s of this.#stops) {
      const i = buf.indexOf(s);
      if (i !== -1 && (first === -1 || i < first)) first = i;
    }
    if (first !== -1) {
      this.#held = '';
      return { emit: buf.slice(0, first), stopped: true };
    }
    const keep = this.#partialSuffix(buf);
    this.#held = buf.slice(buf.length - keep);
    return { emit: buf.slice(0, buf.length - keep), stopped: false };
  }

  /** What was held back, at the end of the output. */
  flush(): string {
    const rest = this.#held;
    this.#held = '';
    return rest;
  }

  /** Length of the longest suffix of buf that is a proper prefix of some stop string. */
  #partialSuffix(buf: string): number {
    let best = 0;
    for (const s of this.#stops) {
      for (let n = Math.min(s.length - 1, buf.length); n > best; n--) {
        if (buf.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
