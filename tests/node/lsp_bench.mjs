// Benchmark of `lode lsp` on a tiny model (node tests/node/lsp_bench.mjs [--n N] [--json] [--model PATH]):
//  1. LSP overhead per request: textDocument/inlineCompletion through
//     `lode lsp` → daemon → back, generation capped at one token, against
//     the same lode/infill sent straight to the daemon socket; p50/p99 of
//     both and of the difference (what the LSP layer costs).
//  2. Keystroke to inline completion: didChange (one character typed) then
//     an automatic inlineCompletion, timed from the keystroke to the answer
//     (16 tokens), with debounce 0 and with the default 75 ms.
import net from 'node:net';
import fs from 'node:fs';
import lspPkg from 'vscode-languageserver-protocol/node';
import { LODE, model, privateDir, startServer, stopDaemon } from './lsp_client.mjs';

const { createMessageConnection, StreamMessageReader, StreamMessageWriter, InlineCompletionRequest } = lspPkg;
const arg = (k, d) => { const i = process.argv.indexOf(k); return i > 0 ? process.argv[i + 1] : d; };
const N = Number(arg('--n', 200));
const M = arg('--model', null) || model('tiny-coder');
const P = privateDir();

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

async function main() {
  const s = startServer(['-m', M, '--socket', P.socket], P.env);
  await s.conn.sendRequest('initialize', { processId: process.pid, capabilities: { textDocument: { inlineCompletion: {} } },
    initializationOptions: { maxTokens: 1, debounceMs: 0 } });
  await s.conn.sendNotification('initialized', {});
  await s.waitNote((m, p) => m === 'lode/status' && p.state === 'ready', 120000);
  const uri = 'file:///bench.py';
  // Part 1: a small file (inside the context budget, so the daemon gets the same prompt both ways).
  const text = 'import os\n\ndef add(a, b):\n    """Add two numbers."""\n    return a + b\n\n\ndef main():\n    x = ';
  await s.conn.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'python', version: 1, text } });
  const lines = text.split('\n');
  const pos = { line: lines.length - 1, character: lines[lines.length - 1].length };

  // Direct daemon client on the same socket.
  const sock = net.createConnection(P.socket);
  await new Promise((r) => sock.once('connect', r));
  const d = createMessageConnection(new StreamMessageReader(sock), new StreamMessageWriter(sock));
  d.listen();
  const prefix = text, suffix = '';

  const lspT = [], dT = [];
  for (let i = 0; i < 10; i++) { // warm both paths (prefix cache)
    await s.conn.sendRequest(InlineCompletionRequest.type, { textDocument: { uri }, position: pos, context: { triggerKind: 1 } });
    await d.sendRequest('lode/infill', { prefix, suffix, max_tokens: 1, temperature: 0 });
  }
  for (let i = 0; i < N; i++) {
    let t0 = process.hrtime.bigint();
    await s.conn.sendRequest(InlineCompletionRequest.type, { textDocument: { uri }, position: pos, context: { triggerKind: 1 } });
    lspT.push(ms(t0));
    t0 = process.hrtime.bigint();
    await d.sendRequest('lode/infill', { prefix, suffix, max_tokens: 1, temperature: 0, deadline_ms: 30000 });
    dT.push(ms(t0));
  }
  const diff = lspT.map((x, i) => x - dT[i]);

  // Part 2, keystroke → inline completion, in a 20 KB file: larger than the
  // 8 KB context budget, so the window slides as the user types.
  const keys = {};
  let version = 1;
  const big = 'file:///big.py';
  let btext = 'import os\n\n';
  for (let i = 0; btext.length < 20000; i++) btext += `def add_${i}(a, b):\n    """Add two numbers."""\n    return a + b + ${i}\n\n\n`;
  btext += 'def main():\n    x = ';
  await s.conn.sendNotification('textDocument/didOpen', { textDocument: { uri: big, languageId: 'python', version: 1, text: btext } });
  const blines = btext.split('\n');
  const bpos = { line: blines.length - 1, character: blines[blines.length - 1].length };
  // The first request prefills the window once (cold); the keystrokes after it are what is measured.
  let t0 = process.hrtime.bigint();
  await s.conn.sendRequest(InlineCompletionRequest.type, { textDocument: { uri: big }, position: bpos, context: { triggerKind: 1 } });
  const coldMs = ms(t0);
  for (const debounce of [0, 75]) {
    await s.conn.sendNotification('workspace/didChangeConfiguration', { settings: { lode: { maxTokens: 16, debounceMs: debounce } } });
    const ts = [];
    s.notes.length = 0;
    const typed = 'compute_the_total_of_all_values_in_the_list(items) + offset_value_from_config';
    for (let i = 0; i < Math.min(N / 2, typed.length); i++) {
      const ch = typed[i];
      const t0 = process.hrtime.bigint();
      await s.conn.sendNotification('textDocument/didChange', { textDocument: { uri: big, version: ++version },
        contentChanges: [{ range: { start: bpos, end: bpos }, text: ch }] });
      bpos.character += 1;
      await s.conn.sendRequest(InlineCompletionRequest.type, { textDocument: { uri: big }, position: bpos, context: { triggerKind: 2 } });
      ts.push(ms(t0));
    }
    keys[debounce] = ts;
    const st = s.notes.filter((n) => n.method === 'lode/status' && n.params.prompt_tokens);
    keys[`cached_${debounce}`] = st.map((n) => n.params.cached_tokens / n.params.prompt_tokens);
    keys[`prompt_${debounce}`] = st.map((n) => n.params.prompt_tokens);
  }
  const st = await s.conn.sendRequest('lode/status', {});
  await s.conn.sendRequest('shutdown');
  await s.conn.sendNotification('exit');
  await s.exited;
  d.dispose();
  sock.destroy();
  stopDaemon(P.socket);
  fs.rmSync(P.dir, { recursive: true, force: true });

  const row = (xs) => ({ p50: +pct(xs, 0.5).toFixed(3), p99: +pct(xs, 0.99).toFixed(3), n: xs.length });
  const out = {
    model: st.model, requests: N,
    lsp_inline_1tok_ms: row(lspT), daemon_infill_1tok_ms: row(dT), lsp_overhead_ms: row(diff),
    keystroke_to_inline_16tok_ms: { debounce_0: row(keys[0]), debounce_75: row(keys[75]) },
    cold_window_16tok_ms: +coldMs.toFixed(1), keystroke_prompt_tokens_p50: pct(keys.prompt_0, 0.5), keystroke_cached_fraction_p50: +pct(keys.cached_0, 0.5).toFixed(3),
  };
  if (process.argv.includes('--json')) console.log(JSON.stringify(out));
  else {
    console.log(`lode lsp benchmark (${N} requests, model ${out.model})`);
    console.log('                                           p50 ms    p99 ms');
    const pr = (name, r) => console.log(`${name.padEnd(42)} ${r.p50.toFixed(2).padStart(7)}  ${r.p99.toFixed(2).padStart(8)}`);
    pr('inline completion via lode lsp, 1 token', out.lsp_inline_1tok_ms);
    pr('lode/infill straight to the daemon, 1 token', out.daemon_infill_1tok_ms);
    pr('LSP overhead (difference per request)', out.lsp_overhead_ms);
    pr('keystroke -> inline, 16 tokens, debounce 0', out.keystroke_to_inline_16tok_ms.debounce_0);
    pr('keystroke -> inline, 16 tokens, debounce 75', out.keystroke_to_inline_16tok_ms.debounce_75);
    console.log(`first request in the 20 KB file (cold window): ${out.cold_window_16tok_ms} ms`);
    console.log(`per keystroke: ${out.keystroke_prompt_tokens_p50} prompt tokens (p50), ${(100 * out.keystroke_cached_fraction_p50).toFixed(1)}% reused from the daemon's prefix cache (p50)`);
  }
}

main().catch((e) => { console.error(e); stopDaemon(P.socket); process.exit(1); });
