import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { postToRunner } from './runner-request.js';

/**
 * A runner that announces keep-alive and resets the connection when a request comes on a socket
 * it already answered on (what llama-server does after a streamed answer). The reset happens when
 * the request is read, so the race with the agent's reuse is decided the same way every run.
 */
async function closingRunner(opts: { resetFresh?: boolean } = {}) {
  const answered = new WeakSet<Socket>();
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    req.resume();
    req.once('end', () => {
      if (answered.has(req.socket) || opts.resetFresh) {
        req.socket.resetAndDestroy();
        return;
      }
      answered.add(req.socket);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  server.on('connection', (s: Socket) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/x`);
  return { server, url, connections: () => sockets.size };
}

const agents: http.Agent[] = [];
const servers: http.Server[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) a.destroy();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

function post(url: URL, agent: http.Agent): Promise<{ status: number } | { error: string }> {
  return new Promise((resolve) => {
    postToRunner({
      url,
      payload: Buffer.from('{}'),
      agent,
      onResponse: (res) => {
        res.resume();
        res.once('end', () => resolve({ status: res.statusCode ?? 0 }));
      },
      onError: (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }),
    });
  });
}

describe('postToRunner', () => {
  it('sends a request again on a fresh connection when the runner closed the reused keep-alive socket', async () => {
    const runner = await closingRunner();
    servers.push(runner.server);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(agent);
    expect(await post(runner.url, agent)).toEqual({ status: 200 });
    expect(await post(runner.url, agent)).toEqual({ status: 200 });
    expect(runner.connections()).toBe(2);
  });

  it('reports a reset of a fresh connection without sending the request again', async () => {
    const runner = await closingRunner({ resetFresh: true });
    servers.push(runner.server);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(agent);
    expect(await post(runner.url, agent)).toEqual({ error: 'ECONNRESET' });
    expect(runner.connections()).toBe(1);
  });
});
