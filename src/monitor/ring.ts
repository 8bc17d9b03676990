/** A bounded FIFO: pushing past the capacity drops the oldest item. O(1) push, O(n) copy out. */
export class RingBuffer<T> {
  readonly capacity: number;
  readonly #items: (T | undefined)[];
  #start = 0;
  #size = 0;

  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1)
      throw new RangeError(`ring capacity must be a positive integer, got ${capacity}`);
    this.capacity = capacity;
    this.#items = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.#size;
  }

  push(item: T): void {
    const end = (this.#start + this.#size) % this.capacity;
    this.#items[end] = item;
    if (this.#size < this.capacity) this.#size++;
    else this.#start = (this.#start + 1) % this.capacity;
  }

  /** The newest item, if any. */
  last(): T | undefined {
    return this.#size === 0
      ? undefined
      : this.#items[(this.#start + this.#size - 1) % this.capacity];
  }

  /** Oldest first; with `limit`, the newest `limit` items. */
  toArray(limit = this.#size): T[] {
    const n = Math.max(0, Math.min(limit, this.#size));
    const out: T[] = new Array<T>(n);
    const from = this.#size - n;
    for (let i = 0; i < n; i++) out[i] = this.#items[(this.#start + from + i) % this.capacity]!;
    return out;
  }

  clear(): void {
    this.#items.fill(undefined);
    this.#start = 0;
    this.#size = 0;
  }
}
