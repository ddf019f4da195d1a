-- Headless Neovim (0.7.2+) attaching `lode lsp` through editors/nvim and
-- getting completions: the popup fallback through the built-in client, and
-- inline completion shown as ghost text (extmarks) and accepted. Any error
-- exits through `cquit 1` (a Lua error alone would still exit 0).
-- Env: LODE_BIN, LODE_TEST_MODEL, LODE_TEST_SOCKET, LODE_NVIM_PLUGIN.
local function check(cond, msg) if not cond then error(msg or 'check failed', 2) end end

local function main()
  vim.opt.runtimepath:prepend(os.getenv('LODE_NVIM_PLUGIN'))
  local lode = require('lode')
  lode.setup({ cmd = { os.getenv('LODE_BIN'), 'lsp' }, model = os.getenv('LODE_TEST_MODEL'),
    socket = os.getenv('LODE_TEST_SOCKET'), max_tokens = 8, debounce_ms = 0 })
  local buf = vim.api.nvim_get_current_buf()
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, { 'def add(a, b):', '    s = "héllo 🌍"', '    ret' })
  vim.api.nvim_buf_set_name(buf, vim.fn.tempname() .. '.py')
  vim.bo[buf].filetype = 'python' -- FileType starts and attaches the client
  local client
  check(vim.wait(20000, function()
    local id = vim.lsp.get_active_clients()[1]
    client = id
    return client ~= nil and client.initialized
  end, 20), 'lode lsp did not initialize')
  check(client.offset_encoding == 'utf-8', 'positionEncoding not negotiated: ' .. tostring(client.offset_encoding))
  check(vim.wait(30000, function() return lode.status() and lode.status().state == 'ready' end, 50),
    'daemon not ready: ' .. vim.inspect(lode.status()))

  -- The popup fallback through the built-in client (0.7 does not announce inline completion).
  local res = vim.lsp.buf_request_sync(buf, 'textDocument/completion', {
    textDocument = { uri = vim.uri_from_bufnr(buf) }, position = { line = 2, character = 7 },
    context = { triggerKind = 1 } }, 30000)
  check(res and res[client.id], 'no completion response')
  check(not res[client.id].err, vim.inspect(res[client.id].err))
  local items = res[client.id].result.items
  check(#items == 1 and items[1].textEdit.newText:sub(1, 3) == 'ret', vim.inspect(items))
  check(items[1].textEdit.range.start.character == 4, vim.inspect(items[1].textEdit.range))

  -- Inline completion as ghost text on line 2 (after the emoji: byte columns, utf-8).
  local done
  check(lode.request(buf, 1, #'    s = "héllo 🌍"', function(err) done = err or true end), 'no client for request')
  check(vim.wait(30000, function() return done ~= nil end, 20), 'no inline completion answer')
  check(done == true, vim.inspect(done))
  check(lode.visible(), 'no ghost text')
  local marks = vim.api.nvim_buf_get_extmarks(buf, vim.api.nvim_create_namespace('lode_ghost'), 0, -1, { details = true })
  check(#marks == 1 and marks[1][2] == 1, vim.inspect(marks))
  local ghost = marks[1][4].virt_text[1][1]
  check(lode.accept(), "accept failed")
  local line = vim.api.nvim_buf_get_lines(buf, 1, 2, false)[1]
  check(line:sub(1, #'    s = "héllo 🌍"' + #ghost) == '    s = "héllo 🌍"' .. ghost, line .. ' / ' .. ghost)
  check(not lode.visible(), 'ghost text left after accept')

  vim.lsp.stop_client(client.id)
  check(vim.wait(10000, function() return vim.lsp.get_client_by_id(client.id) == nil end, 20), 'client did not stop')
end

local ok, err = pcall(main)
if not ok then
  io.stderr:write('FAIL: ' .. tostring(err) .. '\n')
  vim.cmd('cquit 1')
end
io.stderr:write('ok\n')
vim.cmd('qall!')
