import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ConnectionTracker } from './connections.js';

const closed = (s: net.Socket): Promise<void> =>
  new Promise((r) => (s.destroyed ? r() : s.once('close', () => r())));

/** Reads from a raw socket until `text` has arrived. */
const until = (s: net.Socket, text: string): Promise<string> =>
  new Promise((resolve) => {
    let got = '';
    const on = (d: Buffer): void => {
      got += d.toString();
      if (got.includes(text)) {
        s.off('data', on);
        resolve(got);
      }
    };
    s.on('data', on);
  });

/** Waits until `ok()` holds (the server's side of a socket lags the client's a little). */
async function eventually(ok: () => boolean): Promise<void> {
  while (!ok()) await new Promise((r) => setTimeout(r, 5));
}

describe('ConnectionTracker', () => {
  let server: http.Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
  });

  it('ends the connections serving nothing, and one serving an answer once it is out', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    server = http.createServer((req, res) => {
      if (req.url === '/slow') void released.then(() => res.end('slow done'));
      else res.end('ok');
    });
    const tracker = new ConnectionTracker(server);
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const connect = async (): Promise<net.Socket> => {
      const s = net.connect(port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      return s;
    };

    // Answered, kept alive; a request whose headers never finished; one waiting for its answer.
    const kept = await connect();
    kept.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(kept, 'ok');
    const partial = await connect();
    partial.write('GET / HTTP/1.1\r\nHost: x\r\n');
    const slow = await connect();
    const slowAnswer = until(slow, 'slow done');
    slow.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
    await eventually(() => tracker.counts.serving === 1 && tracker.counts.open === 3);

    expect(tracker.closeIdle()).toBe(2);
    await Promise.all([closed(kept), closed(partial)]);
    expect(slow.destroyed).toBe(false);

    release();
    await slowAnswer;
    await eventually(() => tracker.counts.serving === 0);
    expect(tracker.counts).toEqual({ open: 1, serving: 0 });
    expect(tracker.closeIdle()).toBe(1);
    await closed(slow);
    await eventually(() => tracker.counts.open === 0);
  });
});
