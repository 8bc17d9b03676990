import { Duplex } from 'node:stream';

/**
 * An in-memory socket for an HTTP server (`server.emit('connection', socket)`) whose reader the
 * test controls: no kernel buffer sits between the server's writes and the reader, so how much
 * the server may write before it is told to wait is the socket's writable high-water mark, the
 * same on every machine. The reader takes every write until `stopReadingAfter(n)` has been called
 * and it holds n bytes or more; it then takes nothing until `readAgain()`.
 */
export class ReaderSocket extends Duplex {
  readonly received: Buffer[] = [];
  /** Bytes the reader has taken. */
  receivedBytes = 0;
  #limit = Number.POSITIVE_INFINITY;
  /** The write the reader stopped at: the server's socket is full until it is taken. */
  #held: (() => void) | undefined;

  constructor(highWaterMark: number) {
    super({ writableHighWaterMark: highWaterMark });
  }

  /** Sends the request bytes to the server. */
  request(bytes: string): void {
    this.push(bytes);
  }

  /** The reader stops once it has taken `bytes` in all (at once when it has already). */
  stopReadingAfter(bytes: number): void {
    this.#limit = bytes;
  }

  /** The reader takes what waited and everything after. */
  readAgain(): void {
    this.#limit = Number.POSITIVE_INFINITY;
    const held = this.#held;
    this.#held = undefined;
    held?.();
  }

  /** Whether the reader has stopped with a write waiting for it. */
  get stalled(): boolean {
    return this.#held !== undefined;
  }

  /** Everything the reader has taken. */
  bytes(): Buffer {
    return Buffer.concat(this.received);
  }

  /** Everything the reader has taken, as text. */
  text(): string {
    return this.bytes().toString('utf8');
  }

  override _read(): void {}

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    const take = (): void => {
      this.received.push(chunk);
      this.receivedBytes += chunk.length;
      callback();
    };
    if (this.receivedBytes < this.#limit) take();
    else this.#held = take;
  }

  override _final(callback: () => void): void {
    this.push(null);
    callback();
  }
}
