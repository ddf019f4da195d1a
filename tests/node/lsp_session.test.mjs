// `lode lsp` driven through a whole session by a real LSP client
// (vscode-languageserver-protocol 3.18.5 + vscode-jsonrpc 10.0.0) on a tiny
// random model: initialize (capabilities, encodings), open, incremental
// edits with non-BMP text, combining marks and CRLF, inline completion
// (invoked, selectedCompletionInfo), the completion fallback, cancellation
// reaching the daemon, ContentModified, configuration changes, bad
// positions, shutdown and exit. The daemon is started by `lode lsp` itself.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import lsp from 'vscode-languageserver-protocol/node';
const {
  CancellationTokenSource, InlineCompletionRequest, CompletionRequest, InitializeRequest, ShutdownRequest,
  ExitNotification, DidOpenTextDocumentNotification, DidChangeTextDocumentNotification,
  DidChangeConfigurationNotification, InitializedNotification, DidCloseTextDocumentNotification,
  DidSaveTextDocumentNotification,
} = lsp;
import { LODE, model, privateDir, startServer, stopDaemon, sleep } from './lsp_client.mjs';

const M = model('tiny-coder');
const P = privateDir();
after(() => { stopDaemon(P.socket); fs.rmSync(P.dir, { recursive: true, force: true }); });

const caps = (encodings) => ({
  general: { positionEncodings: encodings },
  window: { workDoneProgress: true },
  workspace: { configuration: true },
  textDocument: { inlineCompletion: {}, completion: { completionItem: { snippetSupport: false } } },
});

async function init(s, encodings, opts = {}) {
  const r = await s.conn.sendRequest(InitializeRequest.type, {
    processId: process.pid, rootUri: null, capabilities: caps(encodings),
    initializationOptions: { completionFallback: 'always', maxTokens: 8, debounceMs: 0, ...opts },
  });
  await s.conn.sendNotification(InitializedNotification.type, {});
  return r;
}

function daemonStatus() {
  return JSON.parse(execFileSync(LODE, ['status', '--socket', P.socket, '--json']).toString());
}

async function expectError(p, code) {
  await assert.rejects(p, (e) => { assert.equal(e.code, code, e.message); return true; });
}

test('whole session over utf-16', { timeout: 180000 }, async () => {
  const s = startServer(['-m', M, '--socket', P.socket], P.env);
  const r = await init(s, ['utf-16']);
  const c = r.capabilities;
  assert.equal(c.positionEncoding, 'utf-16');
  assert.deepEqual(c.textDocumentSync, { openClose: true, change: 2, save: { includeText: false } });
  assert.ok(c.inlineCompletionProvider);
  assert.ok(c.completionProvider && c.completionProvider.triggerCharacters.includes('.'));
  assert.equal(r.serverInfo.name, 'lode');

  // The daemon was not running: lode lsp starts it and says so.
  const ready = await s.waitNote((m, p) => m === 'lode/status' && p.state === 'ready');
  assert.match(ready.model, /tiny-coder/);
  assert.ok(s.notes.some((n) => n.request && n.method === 'window/workDoneProgress/create'), 'progress created');
  const begun = s.notes.find((n) => n.method === '$/progress' && n.params.value.kind === 'begin');
  if (begun) await s.waitNote((m, p) => m === '$/progress' && p.value.kind === 'end' && p.token === begun.params.token);

  const uri = 'file:///tmp/a.py';
  await s.conn.sendNotification(DidOpenTextDocumentNotification.type, {
    textDocument: { uri, languageId: 'python', version: 1, text: 's = "😀"\ndef add(a, b):\n    return ' },
  });
  // After the emoji (2 UTF-16 units) and before the closing quote.
  const change = (version, changes) => s.conn.sendNotification(DidChangeTextDocumentNotification.type,
    { textDocument: { uri, version }, contentChanges: changes });
  await change(2, [{ range: { start: { line: 0, character: 7 }, end: { line: 0, character: 7 } }, text: '𝔘é' }]);
  await change(3, [{ range: { start: { line: 2, character: 11 }, end: { line: 2, character: 11 } }, text: '\r\nv = 𝔘x' }]);

  // The completion item replaces the word before the cursor: its range and
  // text show exactly what the server's copy of the document holds.
  let cr = await s.conn.sendRequest(CompletionRequest.type,
    { textDocument: { uri }, position: { line: 3, character: 7 }, context: { triggerKind: 1 } });
  assert.equal(cr.isIncomplete, true);
  assert.equal(cr.items.length, 1, JSON.stringify(cr));
  assert.deepEqual(cr.items[0].textEdit.range, { start: { line: 3, character: 4 }, end: { line: 3, character: 7 } });
  assert.ok(cr.items[0].textEdit.newText.startsWith('𝔘x'), cr.items[0].textEdit.newText);
  assert.ok(cr.items[0].label.startsWith('𝔘x'));

  // A combining mark is one more code point: e + U+0301 replaces the x.
  await change(4, [{ range: { start: { line: 3, character: 6 }, end: { line: 3, character: 7 } }, text: 'e\u0301' }]);
  cr = await s.conn.sendRequest(CompletionRequest.type,
    { textDocument: { uri }, position: { line: 3, character: 8 }, context: { triggerKind: 1 } });
  assert.deepEqual(cr.items[0].textEdit.range, { start: { line: 3, character: 4 }, end: { line: 3, character: 8 } });
  assert.ok(cr.items[0].textEdit.newText.startsWith('𝔘e\u0301'));
  // Inside the surrogate pair of 𝔘: rounds down to its start.
  cr = await s.conn.sendRequest(CompletionRequest.type,
    { textDocument: { uri }, position: { line: 3, character: 5 }, context: { triggerKind: 1 } });
  assert.deepEqual(cr.items[0].textEdit.range.end, { line: 3, character: 4 });
  // Line 0 still holds the emoji edit: a completion right after 'é'.
  cr = await s.conn.sendRequest(CompletionRequest.type,
    { textDocument: { uri }, position: { line: 0, character: 10 }, context: { triggerKind: 1 } });
  assert.deepEqual(cr.items[0].textEdit.range, { start: { line: 0, character: 5 }, end: { line: 0, character: 10 } });
  assert.ok(cr.items[0].textEdit.newText.startsWith('😀𝔘é'));

  // Inline completion, invoked, at the end of the line.
  const ir = await s.conn.sendRequest(InlineCompletionRequest.type,
    { textDocument: { uri }, position: { line: 3, character: 8 }, context: { triggerKind: 1 } });
  assert.equal(ir.items.length, 1, JSON.stringify(ir));
  assert.deepEqual(ir.items[0].range, { start: { line: 3, character: 8 }, end: { line: 3, character: 8 } });
  assert.equal(typeof ir.items[0].insertText, 'string');
  const st = await s.waitNote((m, p) => m === 'lode/status' && p.completions >= 1);
  assert.ok(st.prompt_tokens > 0 && st.generated_tokens >= 1 && st.last_ms > 0, JSON.stringify(st));

  // selectedCompletionInfo: the answer extends the popup's selected item over its range.
  const sel = await s.conn.sendRequest(InlineCompletionRequest.type, {
    textDocument: { uri }, position: { line: 3, character: 8 },
    context: { triggerKind: 2, selectedCompletionInfo: { range: { start: { line: 3, character: 4 }, end: { line: 3, character: 8 } }, text: '𝔘é_total' } },
  });
  assert.equal(sel.items.length, 1);
  assert.ok(sel.items[0].insertText.startsWith('𝔘é_total'), sel.items[0].insertText);
  assert.deepEqual(sel.items[0].range, { start: { line: 3, character: 4 }, end: { line: 3, character: 8 } });

  // Bad requests: the proper errors, and the session goes on.
  await expectError(s.conn.sendRequest(InlineCompletionRequest.type,
    { textDocument: { uri }, position: { line: 99, character: 0 }, context: { triggerKind: 1 } }), -32602);
  await expectError(s.conn.sendRequest(InlineCompletionRequest.type,
    { textDocument: { uri: 'file:///nope.py' }, position: { line: 0, character: 0 }, context: { triggerKind: 1 } }), -32602);
  await expectError(s.conn.sendRequest('lode/noSuchMethod', {}), -32601);

  // Configuration change: long generations (to cancel) and markdown disabled.
  await s.conn.sendNotification(DidChangeConfigurationNotification.type,
    { settings: { lode: { maxTokens: 4000, languages: { markdown: false } } } });
  const md = 'file:///tmp/notes.md';
  await s.conn.sendNotification(DidOpenTextDocumentNotification.type,
    { textDocument: { uri: md, languageId: 'markdown', version: 1, text: '# notes\n' } });
  const before = daemonStatus().requests.received;
  const mr = await s.conn.sendRequest(InlineCompletionRequest.type,
    { textDocument: { uri: md }, position: { line: 1, character: 0 }, context: { triggerKind: 1 } });
  assert.deepEqual(mr.items, []);
  assert.equal(daemonStatus().requests.received, before, 'a disabled language never reaches the daemon');

  // $/cancelRequest: RequestCancelled, and the daemon stops the work.
  // The random model may end a completion early (EOS, a closed block), so
  // each try cancels as soon as the daemon shows the request running, and a
  // try whose completion finished first is repeated.
  const cancelledBefore = daemonStatus().requests.cancelled;
  let gotCancelled = false;
  for (let attempt = 0; attempt < 8 && !gotCancelled; attempt++) {
    const cts = new CancellationTokenSource();
    let settled = false;
    const p = s.conn.sendRequest(InlineCompletionRequest.type,
      { textDocument: { uri }, position: { line: 3, character: 8 }, context: { triggerKind: 1 } }, cts.token);
    p.then(() => { settled = true; }, () => { settled = true; });
    for (let i = 0; i < 200 && !settled && daemonStatus().requests.active === 0; i++) await sleep(5);
    cts.cancel();
    try {
      await p;
    } catch (e) {
      assert.equal(e.code, -32800, e.message);
      gotCancelled = true;
    }
  }
  assert.ok(gotCancelled, 'a running inline completion was cancelled (RequestCancelled)');
  let cancelled = cancelledBefore;
  for (let i = 0; i < 50 && cancelled === cancelledBefore; i++) { await sleep(100); cancelled = daemonStatus().requests.cancelled; }
  assert.ok(cancelled > cancelledBefore, 'the daemon cancelled the generation');
  assert.equal(daemonStatus().requests.active, 0);

  // ContentModified: the document changes under a request.
  const p2 = s.conn.sendRequest(InlineCompletionRequest.type,
    { textDocument: { uri }, position: { line: 3, character: 8 }, context: { triggerKind: 1 } });
  await sleep(200);
  await change(5, [{ range: { start: { line: 3, character: 8 }, end: { line: 3, character: 8 } }, text: ' +' }]);
  await expectError(p2, -32801);

  // Full-document sync, save and close are accepted too.
  await change(6, [{ text: 'x = 1\n' }]);
  await s.conn.sendNotification(DidSaveTextDocumentNotification.type, { textDocument: { uri } });
  await s.conn.sendNotification(DidChangeConfigurationNotification.type, { settings: { lode: { maxTokens: 4 } } });
  cr = await s.conn.sendRequest(CompletionRequest.type,
    { textDocument: { uri }, position: { line: 0, character: 1 }, context: { triggerKind: 1 } });
  assert.deepEqual(cr.items[0].textEdit.range, { start: { line: 0, character: 0 }, end: { line: 0, character: 1 } });
  await s.conn.sendNotification(DidCloseTextDocumentNotification.type, { textDocument: { uri } });
  await expectError(s.conn.sendRequest(CompletionRequest.type,
    { textDocument: { uri }, position: { line: 0, character: 0 } }), -32602);

  assert.equal(await s.conn.sendRequest(ShutdownRequest.type), null);
  await expectError(s.conn.sendRequest(InlineCompletionRequest.type,
    { textDocument: { uri }, position: { line: 0, character: 0 }, context: { triggerKind: 1 } }), -32600);
  await s.conn.sendNotification(ExitNotification.type);
  const ex = await s.exited;
  assert.equal(ex.code, 0, s.stderr());
  assert.ok(!/LeakSanitizer|runtime error/.test(s.stderr()), s.stderr());
  assert.ok(!s.notes.some((n) => n.method === 'window/showMessage' && n.params.type === 1),
    JSON.stringify(s.notes.filter((n) => n.method === 'window/showMessage')));
  s.conn.dispose();
});

for (const [enc, end] of [['utf-8', 9], ['utf-32', 6]]) {
  test(`positionEncoding ${enc} when offered`, { timeout: 60000 }, async () => {
    const s = startServer(['-m', M, '--socket', P.socket], P.env);
    const r = await init(s, [enc, 'utf-16']);
    assert.equal(r.capabilities.positionEncoding, enc);
    const uri = 'file:///tmp/b.py';
    await s.conn.sendNotification(DidOpenTextDocumentNotification.type,
      { textDocument: { uri, languageId: 'python', version: 1, text: 'v = 𝔘x' } });
    const cr = await s.conn.sendRequest(CompletionRequest.type,
      { textDocument: { uri }, position: { line: 0, character: end }, context: { triggerKind: 1 } });
    assert.deepEqual(cr.items[0].textEdit.range, { start: { line: 0, character: 4 }, end: { line: 0, character: end } });
    await s.conn.sendRequest(ShutdownRequest.type);
    await s.conn.sendNotification(ExitNotification.type);
    assert.equal((await s.exited).code, 0);
    s.conn.dispose();
  });
}
