-- lode.nvim is configured with require('lode').setup({...}); nothing runs
-- until then (see editors/nvim/README.md).
if vim.fn.has('nvim-0.7') == 0 then
  vim.api.nvim_err_writeln('lode.nvim needs Neovim 0.7 or newer')
end
