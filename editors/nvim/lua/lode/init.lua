-- lode.nvim: code completions from `lode lsp` (the local DeepSeek-Coder-V2
-- daemon) as ghost text. Works on Neovim 0.7.2+ and feature-detects newer
-- APIs: vim.lsp.start (0.8), vim.uv (0.10), inline virtual text (0.10) and
-- the native vim.lsp.inline_completion (0.12, used when present).
--
--   require('lode').setup({ model = '/path/model.gguf' })
--
-- Insert mode: suggestions appear after `debounce_ms` of no typing; <Tab>
-- (accept_key) accepts, <C-]> (dismiss_key) dismisses. :LodeStatus shows
-- what the daemon is doing and why completions may be missing.
local M = {}

local uv = vim.uv or vim.loop
local api = vim.api
local ns = api.nvim_create_namespace('lode_ghost')

M.config = {
  cmd = { 'lode', 'lsp' },
  model = nil,            -- else $LODE_MODEL or a daemon already running
  socket = nil,
  filetypes = nil,        -- nil: every buffer with a filetype
  debounce_ms = 75,
  max_tokens = 64,
  settings = {},          -- more initializationOptions (docs/lsp.md)
  accept_key = '<Tab>',
  dismiss_key = '<C-]>',
  native = true,          -- use vim.lsp.inline_completion when Neovim has it
}

local state = { client_id = nil, timer = nil, ghost = nil, seq = 0, status = nil }

local function inline_virt_text_supported()
  if state.inline_vt ~= nil then return state.inline_vt end
  local buf = api.nvim_create_buf(false, true)
  state.inline_vt = pcall(api.nvim_buf_set_extmark, buf, ns, 0, 0, { virt_text = { { 'x' } }, virt_text_pos = 'inline' })
  api.nvim_buf_delete(buf, { force = true })
  return state.inline_vt
end

-- Byte column of an LSP position (private helpers differ across versions).
local function byte_col(bufnr, pos, enc)
  if enc == 'utf-8' then return pos.character end
  local line = api.nvim_buf_get_lines(bufnr, pos.line, pos.line + 1, false)[1] or ''
  local ok, b = pcall(vim.str_byteindex, line, pos.character, enc == 'utf-16')
  return ok and b or #line
end

local function client()
  return state.client_id and vim.lsp.get_client_by_id(state.client_id) or nil
end

function M.clear(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  if api.nvim_buf_is_valid(bufnr) then api.nvim_buf_clear_namespace(bufnr, ns, 0, -1) end
  state.ghost = nil
end

-- Show item (an InlineCompletionItem) as ghost text at the cursor (row 0-based, col bytes).
local function show(bufnr, row, col, item, typed)
  M.clear(bufnr)
  local text = item.insertText or ''
  if type(text) == 'table' then text = text.value or '' end
  -- The part of insertText beyond what is already in the buffer.
  if typed ~= '' and text:sub(1, #typed) == typed then text = text:sub(#typed + 1) end
  if text == '' then return end
  local lines = vim.split(text, '\n', { plain = true })
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  local opts = { virt_text = { { lines[1], 'Comment' } }, hl_mode = 'combine' }
  if inline_virt_text_supported() then
    opts.virt_text_pos = 'inline'
  elseif col >= #line then
    opts.virt_text_pos = 'overlay'
  else
    opts.virt_text_pos = 'eol' -- 0.7-0.9: cannot insert between characters
  end
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do table.insert(opts.virt_lines, { { lines[i], 'Comment' } }) end
  end
  api.nvim_buf_set_extmark(bufnr, ns, row, math.min(col, #line), opts)
  state.ghost = { bufnr = bufnr, item = item, row = row, col = col }
end

-- Ask for an inline completion at the cursor of window win (or at row/col).
function M.request(bufnr, row, col, on_done)
  local c = client()
  bufnr = bufnr or api.nvim_get_current_buf()
  if not c then return false end
  if not row then
    local cur = api.nvim_win_get_cursor(0)
    row, col = cur[1] - 1, cur[2]
  end
  state.seq = state.seq + 1
  local seq = state.seq
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  local character = col
  if c.offset_encoding ~= 'utf-8' then
    character = vim.str_utfindex(line, math.min(col, #line))
    if c.offset_encoding == 'utf-16' then character = select(2, vim.str_utfindex(line, math.min(col, #line))) end
  end
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    position = { line = row, character = character },
    context = { triggerKind = 2 },
  }
  c.request('textDocument/inlineCompletion', params, function(err, result)
    if seq ~= state.seq then return end -- a newer request is on its way
    if not err and result and result.items and result.items[1] then
      local item = result.items[1]
      local typed = ''
      if item.range then
        local s = item.range.start
        local sc = byte_col(bufnr, s, c.offset_encoding)
        if s.line == row and sc < col then typed = line:sub(sc + 1, col) end
      end
      show(bufnr, row, col, item, typed)
    end
    if on_done then on_done(err, result) end
  end, bufnr)
  return true
end

function M.visible() return state.ghost ~= nil end

-- Accept the ghost text: apply the item as a text edit and move the cursor after it.
function M.accept()
  local g = state.ghost
  if not g then return false end
  local c = client()
  local item = g.item
  local text = type(item.insertText) == 'table' and item.insertText.value or item.insertText
  local range = item.range or {
    start = { line = g.row, character = g.col }, ['end'] = { line = g.row, character = g.col } }
  M.clear(g.bufnr)
  local enc = c and c.offset_encoding or 'utf-16'
  vim.lsp.util.apply_text_edits({ { range = range, newText = text } }, g.bufnr, enc)
  local lines = vim.split(text, '\n', { plain = true })
  local srow = range.start.line
  local scol = byte_col(g.bufnr, range.start, enc)
  local erow = srow + #lines - 1
  local ecol = (#lines == 1 and scol or 0) + #lines[#lines]
  if api.nvim_get_current_buf() == g.bufnr then pcall(api.nvim_win_set_cursor, 0, { erow + 1, ecol }) end
  return true
end

function M.status()
  return state.status
end

local function schedule_request()
  if state.timer then state.timer:stop() end
  M.clear()
  state.timer = state.timer or uv.new_timer()
  local bufnr = api.nvim_get_current_buf()
  state.timer:start(M.config.debounce_ms, 0, vim.schedule_wrap(function()
    if api.nvim_get_current_buf() == bufnr and api.nvim_get_mode().mode:sub(1, 1) == 'i' then M.request(bufnr) end
  end))
end

local function start_client(bufnr)
  local cfg = M.config
  local cmd = vim.deepcopy(cfg.cmd)
  if cfg.model then vim.list_extend(cmd, { '-m', cfg.model }) end
  if cfg.socket then vim.list_extend(cmd, { '--socket', cfg.socket }) end
  local capabilities = vim.lsp.protocol.make_client_capabilities()
  capabilities.general = capabilities.general or {}
  capabilities.general.positionEncodings = { 'utf-8', 'utf-16' }
  capabilities.window = capabilities.window or {}
  capabilities.window.workDoneProgress = true
  local init_options = vim.tbl_extend('force', { debounceMs = 0, maxTokens = cfg.max_tokens }, cfg.settings)
  local conf = {
    name = 'lode',
    cmd = cmd,
    root_dir = vim.loop.cwd(),
    capabilities = capabilities,
    init_options = init_options,
    on_init = function(c, result)
      -- 0.7/0.8 know only clangd's offsetEncoding: take positionEncoding.
      local enc = result and result.capabilities and result.capabilities.positionEncoding
      if enc then c.offset_encoding = enc end
    end,
    handlers = {
      ['lode/status'] = function(_, params)
        state.status = params
        vim.g.lode_status = params and params.state or nil
      end,
    },
  }
  if not state.client_id or not client() then
    state.client_id = vim.lsp.start_client(conf)
  end
  if state.client_id then vim.lsp.buf_attach_client(bufnr, state.client_id) end
  return state.client_id
end
M.start = start_client

function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', M.config, opts or {})
  local group = api.nvim_create_augroup('lode', { clear = true })
  local native = M.config.native and vim.lsp.inline_completion ~= nil
  api.nvim_create_autocmd('FileType', {
    group = group,
    callback = function(ev)
      local ft = vim.bo[ev.buf].filetype
      if ft == '' or (M.config.filetypes and not vim.tbl_contains(M.config.filetypes, ft)) then return end
      local id = start_client(ev.buf)
      if native and id then pcall(vim.lsp.inline_completion.enable, true, { bufnr = ev.buf, client_id = id }) end
    end,
  })
  if not native then
    api.nvim_create_autocmd({ 'TextChangedI', 'TextChangedP' }, { group = group, callback = schedule_request })
    api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, { group = group, callback = function() M.clear() end })
    vim.keymap.set('i', M.config.accept_key, function()
      if M.visible() then
        vim.schedule(M.accept)
        return ''
      end
      return api.nvim_replace_termcodes(M.config.accept_key, true, false, true)
    end, { expr = true, desc = 'lode: accept the suggestion' })
    vim.keymap.set('i', M.config.dismiss_key, function() M.clear() end, { desc = 'lode: dismiss the suggestion' })
  end
  api.nvim_create_user_command('LodeStatus', function()
    local s = state.status
    if not s then
      print('lode: not started')
    else
      print(string.format('lode: %s — %s%s', s.state, s.message or '',
        s.last_ms and string.format(' (last completion %.0f ms, %d prompt tokens, %d cached)', s.last_ms,
          s.prompt_tokens or 0, s.cached_tokens or 0) or ''))
    end
  end, {})
end

return M
