#!/usr/bin/env node
// The floor for bench/stream-overhead: the smallest HTTP proxy Node can be (read the body, one
// keep-alive request upstream with Nagle off, copy the answer back chunk by chunk), as its own
// process like the daemon. What the daemon adds beyond this is its own work; what this adds is
// the extra process hop itself on this machine.
//
//   node bench/lib/bare-proxy.mjs http://127.0.0.1:PORT   # prints "listening on http://…"
import http from 'node:http';

const target = new URL(process.argv[2]);
const agent = new http.Agent({ keepAlive: true });
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (d) => chunks.push(d));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const up = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: req.url,
        method: req.method,
        agent,
        headers: { 'content-type': 'application/json', 'content-length': body.length },
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        res.socket?.setNoDelay(true);
        answer.on('data', (c) => res.write(c));
        answer.on('end', () => res.end());
      },
    );
    up.on('error', () => res.destroy());
    up.setNoDelay(true);
    up.end(body);
  });
});
server.listen(0, '127.0.0.1', () =>
  console.log(`listening on http://127.0.0.1:${server.address().port}`),
);
