import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/**
 * A server's open connections and the responses each has under way, so that a shutdown can end
 * the connections that serve nothing. Node's own `closeIdleConnections` asks its HTTP parser,
 * which leaves out a connection whose parser began a message that never completed: measured in
 * the soak, such keep-alive connections with no response pending held a shutdown until its
 * deadline in 2 of 6 runs.
 */
export class ConnectionTracker {
  readonly #responses = new Map<Socket, number>();

  constructor(server: Server) {
    server.on('connection', (socket: Socket) => {
      this.#responses.set(socket, 0);
      socket.once('close', () => this.#responses.delete(socket));
    });
    server.on('request', (req, res) => {
      const socket = req.socket;
      const n = this.#responses.get(socket);
      if (n === undefined) return;
      this.#responses.set(socket, n + 1);
      // 'close' comes when the response ended or its connection did, whichever is first.
      res.once('close', () => {
        const left = this.#responses.get(socket);
        if (left !== undefined) this.#responses.set(socket, left - 1);
      });
    });
  }

  /** Open connections, and how many of them have a response under way. */
  get counts(): { open: number; serving: number } {
    let serving = 0;
    for (const n of this.#responses.values()) if (n > 0) serving++;
    return { open: this.#responses.size, serving };
  }

  /** Ends every connection that has no response under way; returns how many. */
  closeIdle(): number {
    let closed = 0;
    for (const [socket, n] of this.#responses)
      if (n === 0 && !socket.destroyed) {
        socket.destroy();
        closed++;
      }
    return closed;
  }
}
