// lode for VS Code: spawns `lode lsp` (stdio) and lets vscode-languageclient
// 11 provide inline completions through LSP 3.18 textDocument/inlineCompletion.
// Settings under `lode.*` become initializationOptions and are pushed again on
// change (workspace/didChangeConfiguration, section "lode"). The status bar
// shows the server's lode/status notification; errors the user can act on
// arrive as window/showMessage from the server.
import * as vscode from 'vscode';
import { LanguageClient, LanguageClientOptions, ServerOptions } from 'vscode-languageclient/node';

let client: LanguageClient | undefined;
let status: vscode.StatusBarItem | undefined;

interface LodeStatus {
  state: 'connecting' | 'starting' | 'ready' | 'error';
  message?: string;
  model?: string;
  enabled?: boolean;
  last_ms?: number;
  prompt_tokens?: number;
  cached_tokens?: number;
}

// The initializationOptions for `lode lsp` (docs/lsp.md, Settings).
export function initOptions(cfg: vscode.WorkspaceConfiguration): Record<string, unknown> {
  const o: Record<string, unknown> = {
    enable: cfg.get<boolean>('enable', true),
    languages: cfg.get<object>('languages', {}),
    maxTokens: cfg.get<number>('maxTokens', 64),
    temperature: cfg.get<number>('temperature', 0),
    contextBudget: cfg.get<number>('contextBudget', 8192),
    debounceMs: cfg.get<number>('debounceMs', 50),
    deadlineMs: cfg.get<number>('deadlineMs', 30000),
    completionFallback: 'never', // VS Code shows inline completions
  };
  const model = cfg.get<string>('model', '');
  const socket = cfg.get<string>('socket', '');
  if (model) o.model = model;
  if (socket) o.socket = socket;
  return o;
}

function showStatus(s: LodeStatus): void {
  if (!status) return;
  const icon = s.state === 'ready' ? '$(sparkle)' : s.state === 'error' ? '$(error)' : '$(loading~spin)';
  status.text = `${icon} lode`;
  const timing = s.last_ms !== undefined
    ? `\nlast completion ${s.last_ms.toFixed(0)} ms (${s.prompt_tokens} prompt tokens, ${s.cached_tokens} cached)` : '';
  status.tooltip = `${s.state}: ${s.message ?? ''}${s.model ? `\nmodel ${s.model}` : ''}${timing}`;
  status.show();
}

async function start(ctx: vscode.ExtensionContext): Promise<void> {
  const cfg = vscode.workspace.getConfiguration('lode');
  const serverOptions: ServerOptions = { command: cfg.get<string>('path', 'lode') || 'lode', args: ['lsp'] };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
    initializationOptions: initOptions(cfg),
    synchronize: { configurationSection: 'lode' },
    outputChannelName: 'lode',
  };
  client = new LanguageClient('lode', 'lode', serverOptions, clientOptions);
  ctx.subscriptions.push(client.onNotification('lode/status', (s: LodeStatus) => showStatus(s)));
  try {
    await client.start();
  } catch (e) {
    void vscode.window.showErrorMessage(`lode: cannot start \`${serverOptions.command} lsp\`: ${String(e)}. ` +
      'Set lode.path to the lode binary.');
  }
}

export async function activate(ctx: vscode.ExtensionContext): Promise<void> {
  status = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  status.command = 'lode.showLog';
  ctx.subscriptions.push(status);
  ctx.subscriptions.push(vscode.commands.registerCommand('lode.restart', async () => {
    await client?.stop();
    await start(ctx);
  }));
  ctx.subscriptions.push(vscode.commands.registerCommand('lode.showLog', () => client?.outputChannel.show()));
  ctx.subscriptions.push(vscode.workspace.onDidChangeConfiguration(async (e) => {
    if (e.affectsConfiguration('lode.path')) {
      await client?.stop();
      await start(ctx);
    }
  }));
  await start(ctx);
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
