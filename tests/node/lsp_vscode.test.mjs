// The VS Code extension (editors/vscode) without VS Code, which cannot be
// downloaded here: the pins vsce and the LSP 3.18 inline feature need, a tsc
// build, and the settings → initializationOptions mapping with a stubbed
// `vscode` module. Skipped when editors/vscode has no node_modules (make deps).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Module, { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const EXT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'editors', 'vscode');
const pkg = JSON.parse(fs.readFileSync(path.join(EXT, 'package.json')));
const installed = fs.existsSync(path.join(EXT, 'node_modules', 'typescript'));

test('extension manifest', () => {
  assert.equal(pkg.dependencies['vscode-languageclient'], '11.0.0');
  assert.equal(pkg.engines.vscode, '^1.91.0');
  assert.equal(pkg.devDependencies['@types/vscode'], '1.91.0'); // vsce rejects newer than engines
  const props = Object.keys(pkg.contributes.configuration.properties);
  for (const k of ['model', 'socket', 'maxTokens', 'temperature', 'enable', 'languages', 'contextBudget', 'debounceMs'])
    assert.ok(props.includes(`lode.${k}`), k);
});

test('settings become initializationOptions', { skip: !installed && 'editors/vscode not installed' }, () => {
  execFileSync(process.execPath, [path.join(EXT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', EXT]);
  const load = Module._load;
  const stubs = { vscode: {}, 'vscode-languageclient/node': { LanguageClient: class {} } };
  Module._load = function (req, ...rest) { return req in stubs ? stubs[req] : load.call(this, req, ...rest); };
  try {
    const ext = createRequire(import.meta.url)(path.join(EXT, 'out', 'extension.js'));
    const values = { model: '/m.gguf', socket: '', maxTokens: 32, languages: { markdown: false } };
    const cfg = { get: (k, d) => (k in values ? values[k] : d) };
    const o = ext.initOptions(cfg);
    assert.deepEqual(o, { enable: true, languages: { markdown: false }, maxTokens: 32, temperature: 0,
      contextBudget: 8192, debounceMs: 50, deadlineMs: 30000, completionFallback: 'never', model: '/m.gguf' });
  } finally {
    Module._load = load;
  }
});
