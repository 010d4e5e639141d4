// A minimal LSP client over a child process's stdio: Content-Length framing, requests with
// timeouts, a log of server notifications and requests, and default answers to server requests.
import { spawn } from 'node:child_process';

export class LspClient {
  /** @param {string} command @param {string[]} args @param {{env?: NodeJS.ProcessEnv, answer?: (msg) => unknown}} [opts] */
  constructor(command, args, opts = {}) {
    this.proc = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    this.answer = opts.answer ?? (() => null);
    this.nextId = 1;
    this.pending = new Map();
    /** Every message the server sent that is not a reply: {method, params, id?}. */
    this.received = [];
    this.waiters = [];
    this.stderr = '';
    this.buf = Buffer.alloc(0);
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
    this.proc.stdout.on('data', (d) => this.onData(d));
    this.proc.stderr.on('data', (d) => {
      this.stderr += d;
    });
    this.proc.on('exit', (code, signal) => {
      for (const { reject } of this.pending.values()) reject(new Error(`server exited (${code ?? signal}); stderr: ${this.stderr.slice(-2000)}`));
      this.pending.clear();
    });
  }

  write(msg) {
    const body = Buffer.from(JSON.stringify({ jsonrpc: '2.0', ...msg }), 'utf8');
    this.proc.stdin.write(`Content-Length: ${body.length}\r\n\r\n`);
    this.proc.stdin.write(body);
  }

  request(method, params, timeoutMs = 20_000) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no reply within ${timeoutMs / 1000}s`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.write(params === undefined ? { id, method } : { id, method, params });
    });
  }

  notify(method, params) {
    this.write(params === undefined ? { method } : { method, params });
  }

  /** Resolves with the first message received (already, or later) that `pred` accepts. */
  waitFor(pred, what, timeoutMs = 20_000, since = 0) {
    const hit = this.received.slice(since).find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (m) => (clearTimeout(w.timer), resolve(m)),
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          const seen = this.received.map((m) => m.method).join(', ') || 'nothing';
          reject(new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}; received: ${seen}`));
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  onData(d) {
    this.buf = Buffer.concat([this.buf, d]);
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const m = /Content-Length:\s*(\d+)/i.exec(this.buf.subarray(0, end).toString('ascii'));
      if (!m) throw new Error(`bad header: ${this.buf.subarray(0, end)}`);
      const len = Number(m[1]);
      if (this.buf.length < end + 4 + len) return;
      const msg = JSON.parse(this.buf.subarray(end + 4, end + 4 + len).toString('utf8'));
      this.buf = this.buf.subarray(end + 4 + len);
      this.dispatch(msg);
    }
  }

  dispatch(msg) {
    if (msg.method === undefined) {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error) {
        const err = new Error(msg.error.message);
        err.code = msg.error.code;
        err.data = msg.error.data;
        p.reject(err);
      } else p.resolve(msg.result);
      return;
    }
    this.received.push(msg);
    if (msg.id !== undefined) {
      // A server → client request: answer as the IDE would.
      Promise.resolve(this.answer(msg)).then(
        (result) => this.write({ id: msg.id, result: result ?? null }),
        (e) => this.write({ id: msg.id, error: { code: -32603, message: String(e) } }),
      );
    }
    for (const w of [...this.waiters]) {
      if (w.pred(msg)) {
        this.waiters = this.waiters.filter((x) => x !== w);
        w.resolve(msg);
      }
    }
  }

  async close() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    try {
      await this.request('shutdown', undefined, 5000);
      this.notify('exit');
    } catch {}
    const t = setTimeout(() => this.proc.kill('SIGTERM'), 3000);
    await this.exited;
    clearTimeout(t);
  }
}
