import http from 'node:http';
import { mkdtemp } from 'node:fs/promises';
import type { Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { Daemon } from '../../src/daemon/daemon.js';
import { silentLogger } from '../../src/lib/logger.js';
import { describeEachEngine } from '../helpers/engines.js';
import { tinyChatModel } from '../helpers/models.js';

// A client that keeps its connections alive (every HTTP library's default) must not hold a
// daemon's shutdown: the request in flight is served in full, then the daemon closes the
// connection itself rather than waiting for the client or the shutdown deadline.

interface Streamed {
  body: string;
  socket: Socket;
}

/** POSTs a streamed chat on `agent`; resolves once the first chunk arrived, and again at its end. */
function streamChat(
  url: string,
  agent: http.Agent,
): { first: Promise<void>; done: Promise<Streamed> } {
  let first!: () => void;
  const firstP = new Promise<void>((r) => (first = r));
  const done = new Promise<Streamed>((resolve, reject) => {
    const req = http.request(
      `${url}/v1/chat/completions`,
      { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
          first();
        });
        res.on('end', () => resolve({ body, socket: req.socket! }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(
      JSON.stringify({
        model: 'tiny-chat',
        messages: [{ role: 'user', content: 'Tell me a long story.' }],
        max_tokens: 48,
        temperature: 0,
        stream: true,
      }),
    );
  });
  return { first: firstP, done };
}

describeEachEngine('shutdown', (engine) => {
  it('serves the request in flight in full, then closes its keep-alive connection itself', async () => {
    const file = await tinyChatModel();
    const daemon = await Daemon.start({
      home: await mkdtemp(path.join(os.tmpdir(), 'headroom-shutdown-')),
      log: silentLogger(),
      // Far beyond the test's timeout: a shutdown that waited for the client would fail it.
      shutdownDeadlineMs: 600_000,
      config: {
        port: 0,
        demoModel: false,
        modelDirs: [path.dirname(file)],
        runner: { contextSize: 1024, threads: 1 },
        engines: engine.engines,
      },
    });
    const agent = new http.Agent({ keepAlive: true });
    try {
      // Loaded first, so the request below is decoding when the shutdown starts.
      await streamChat(daemon.url, agent).done;
      const { first, done } = streamChat(daemon.url, agent);
      await first;
      const closed = daemon.close();
      const { body, socket } = await done;
      expect(body).toMatch(/data: \[DONE\]/);
      await closed;
      // The daemon ended the connection (the agent still held it, idle, and never ends it).
      await new Promise<void>((r) => (socket.destroyed ? r() : socket.once('close', () => r())));
      expect(socket.destroyed).toBe(true);
    } finally {
      agent.destroy();
      await daemon.close();
    }
  }, 60_000);
});
