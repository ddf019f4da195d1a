// Shared helpers for the `lode lsp` node tests: the binary, a cached tiny
// model, a private daemon socket, and a vscode-jsonrpc client session.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import lsp from 'vscode-languageserver-protocol/node';
const {
  createProtocolConnection, StreamMessageReader, StreamMessageWriter,
} = lsp;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const LODE = process.env.LODE_BIN || path.join(ROOT, 'build', 'lode');
const CACHE = process.env.LODE_TEST_CACHE || path.join(ROOT, 'build', 'test-cache');

// The same cache naming as tests/py/lodetest.py: generated once per binary.
export function model(preset = 'tiny-coder') {
  fs.mkdirSync(CACHE, { recursive: true });
  const out = path.join(CACHE, `${preset}-f32-s0.gguf`);
  if (!fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(LODE).mtimeMs) {
    const tmp = `${out}.${process.pid}.tmp.gguf`;
    execFileSync(LODE, ['gen', preset, '-o', tmp, '--type', 'f32', '--seed', '0', '--quiet']);
    fs.renameSync(tmp, out);
  }
  return out;
}

// A private runtime dir (0700) for the daemon socket and its log.
export function privateDir() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'lode-lsp-'));
  fs.chmodSync(d, 0o700);
  // LODE_NO_PROJECT_CONTEXT: random-weight models write random text, which the syntax-aware
  // post-processing rejects; these tests are about the protocol (see tests/py/test_context.py).
  return { dir: d, socket: path.join(d, 'lode.sock'), env: { ...process.env, XDG_STATE_HOME: d, LODE_NO_PROJECT_CONTEXT: '1' } };
}

export function stopDaemon(socket) {
  try { execFileSync(LODE, ['stop', '--socket', socket], { stdio: 'ignore' }); } catch { /* not running */ }
}

// Start `lode lsp` and wrap it in a protocol connection. Notifications are
// recorded in `notes`; server->client requests are answered by `onRequest`.
export function startServer(args, env, onRequest = {}) {
  const child = spawn(LODE, ['lsp', ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const conn = createProtocolConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
  const notes = [];
  const waiters = [];
  conn.onNotification((method, params) => {
    notes.push({ method, params });
    for (const w of [...waiters]) if (w.pred(method, params)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(params); }
  });
  conn.onRequest((method, params) => {
    notes.push({ method, params, request: true });
    return onRequest[method] ? onRequest[method](params) : null;
  });
  conn.listen();
  const exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve({ code, sig })));
  return {
    child, conn, notes, exited,
    stderr: () => stderr,
    // Resolve on the first notification (seen or future) that matches.
    waitNote(pred, ms = 60000) {
      const seen = notes.find((n) => !n.request && pred(n.method, n.params));
      if (seen) return Promise.resolve(seen.params);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('timed out waiting for a notification')), ms);
        waiters.push({ pred, resolve: (p) => { clearTimeout(t); resolve(p); } });
      });
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
