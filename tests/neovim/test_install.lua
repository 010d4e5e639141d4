-- :help scanmint and the install recipes of editors/neovim/README.md, run as written against a
-- local checkout (a copy of the repository's editors/neovim): each recipe sets up a fresh Neovim
-- in which tests/neovim/install_check.lua checks the plugin came from the checkout and works.
-- lazy.nvim itself is not installed (no network): its part, calling the spec's `build` and
-- `config` with the plugin and `opts`, is emulated; so is vim-plug's `rtp` option.
local h = dofile('tests/neovim/helpers.lua')

local repo = vim.fn.getcwd()
local nvim = vim.v.progpath
local base = h.env.tmp .. '/install'
local readme = table.concat(vim.fn.readfile(repo .. '/editors/neovim/README.md'), '\n')
local doc = table.concat(vim.fn.readfile(repo .. '/editors/neovim/doc/scanmint.txt'), '\n')

-- The first ```lang block after `marker` in the README.
local function readme_block(marker, lang)
  local at = assert(readme:find(marker, 1, true), 'README has no ' .. marker)
  local s, e = readme:find('```' .. lang .. '\n', at, true)
  local stop = readme:find('\n```', e, true)
  assert(s and stop, ('no ```%s block after %s'):format(lang, marker))
  return readme:sub(e + 1, stop)
end

-- A local checkout: the repository's editors/neovim (without generated tags) under `root`.
local function checkout(root)
  vim.fn.mkdir(root .. '/editors', 'p')
  local res = vim.system({ 'cp', '-r', repo .. '/editors/neovim', root .. '/editors/' }):wait()
  assert(res.code == 0, res.stderr)
  vim.fn.delete(root .. '/editors/neovim/doc/tags')
  return root .. '/editors/neovim'
end

-- Run a fresh Neovim (argv after `nvim`) with extra `env` assignments and the named variables
-- removed; install_check.lua's verdict must be ALL OK.
local function run_check(argv, env, unset)
  local cmd = { 'env' }
  for _, name in ipairs(unset or {}) do
    vim.list_extend(cmd, { '-u', name })
  end
  for k, v in pairs(env) do
    cmd[#cmd + 1] = k .. '=' .. v
  end
  cmd[#cmd + 1] = nvim
  vim.list_extend(cmd, argv)
  local res = vim.system(cmd, { text = true, cwd = repo }):wait(40000)
  local out = (res.stdout or '') .. (res.stderr or '')
  h.ok(res.code == 0 and out:find('ALL OK', 1, true), ('exit %s:\n%s'):format(tostring(res.code), out))
end

local check_script = repo .. '/tests/neovim/install_check.lua'

h.test(':helptags makes the tags; :help opens every tag and every |link| resolves', function()
  local dir = checkout(base .. '/help')
  local ok, err = pcall(vim.cmd.helptags, dir .. '/doc') -- duplicate tags raise E154
  h.ok(ok, 'helptags: ' .. tostring(err))
  vim.opt.rtp:prepend(dir)
  local tags = {}
  for tag in doc:gmatch('%*([^%s*|]+)%*') do
    tags[#tags + 1] = tag
  end
  h.ok(#tags >= 15, 'tags in scanmint.txt: ' .. vim.inspect(tags))
  for _, tag in ipairs(vim.list_extend({ 'scanmint' }, tags)) do
    local hok, herr = pcall(vim.cmd.help, tag)
    h.ok(hok, (':help %s: %s'):format(tag, tostring(herr)))
    h.eq('scanmint.txt', vim.fn.expand('%:t'), ':help ' .. tag .. ' opens')
    vim.cmd.close()
  end
  for link in doc:gmatch('|([^%s|]+)|') do
    local lok, lerr = pcall(vim.cmd.help, link)
    h.ok(lok, ('|%s| resolves: %s'):format(link, tostring(lerr)))
    vim.cmd.close()
  end
end)

h.test('the help file gives the same install recipes as the README', function()
  local function squash(s)
    return (s:gsub('\n%s+', '\n'):gsub('^%s+', ''):gsub('%s+$', ''))
  end
  local squashed = squash(doc)
  for _, b in ipairs({
    readme_block('**lazy.nvim**', 'lua'),
    readme_block('**vim-plug**', 'vim'),
    readme_block('**Native packages**', 'sh'),
  }) do
    h.ok(squashed:find(squash(b), 1, true), 'scanmint.txt lacks:\n' .. b)
  end
end)

h.test("lazy.nvim: the README's spec (build, then config with opts) against a local checkout", function()
  local root = base .. '/lazy/scanmint'
  local dir = checkout(root)
  local spec_file = base .. '/lazy/spec.lua'
  vim.fn.writefile(vim.split('return ' .. readme_block('**lazy.nvim**', 'lua'), '\n'), spec_file)
  -- What lazy.nvim does for a plugin at `root`: build on install, config(plugin, opts) at load.
  local emulate = base .. '/lazy/lazy.lua'
  vim.fn.writefile({
    ('local spec = dofile(%q)'):format(spec_file),
    ('local plugin = { name = "scanmint", dir = %q }'):format(root),
    'assert(spec[1] == "scanmint/scanmint", "the repository: " .. tostring(spec[1]))',
    'if spec.build then spec.build(plugin) end',
    'spec.config(plugin, spec.opts or {})',
    ('dofile(%q)'):format(check_script),
  }, emulate)
  run_check({ '--headless', '--clean', '-c', 'luafile ' .. emulate }, { SCANMINT_PLUGIN_DIR = dir })
  h.ok(vim.fn.filereadable(dir .. '/doc/tags') == 1, 'build made doc/tags')
end)

h.test("native packages: the README's shell lines and init.lua line, in a fresh HOME", function()
  local home = base .. '/pkg/home'
  vim.fn.mkdir(home, 'p')
  -- The clone is the local checkout: run every other line as written.
  checkout(home .. '/src/scanmint')
  local lines = vim.tbl_filter(function(l)
    return not vim.startswith(l, 'git clone ')
  end, vim.split(readme_block('**Native packages**', 'sh'), '\n', { trimempty = true }))
  local bindir = base .. '/pkg/bin'
  vim.fn.mkdir(bindir, 'p')
  vim.uv.fs_symlink(nvim, bindir .. '/nvim')
  local script = table.concat(lines, '\n')
  local res = vim
    .system({ 'env', '-u', 'XDG_DATA_HOME', '-u', 'XDG_CONFIG_HOME', 'HOME=' .. home, 'PATH=' .. bindir .. ':' .. vim.env.PATH, 'bash', '-euc', script }, { text = true })
    :wait(30000)
  h.eq(0, res.code, 'the shell lines:\n' .. script .. '\n' .. (res.stderr or ''))
  local pack = home .. '/.local/share/nvim/site/pack/scanmint/start/scanmint'
  h.ok(vim.fn.filereadable(pack .. '/doc/tags') == 1, 'helptags made ' .. pack .. '/doc/tags')
  local init_line = readme:match('then in `init%.lua`: `([^`]+)`')
  h.eq("vim.lsp.enable('scanmint')", init_line, 'the init.lua line')
  vim.fn.mkdir(home .. '/.config/nvim', 'p')
  vim.fn.writefile({ init_line }, home .. '/.config/nvim/init.lua')
  -- A normal start (user config and packages), not --clean.
  run_check(
    { '--headless', '-i', 'NONE', '-c', 'luafile ' .. check_script },
    { HOME = home, SCANMINT_PLUGIN_DIR = pack },
    { 'XDG_DATA_HOME', 'XDG_CONFIG_HOME' }
  )
end)

h.test("vim-plug: the README's Plug line and setup() (vim-plug's 'rtp' option emulated)", function()
  local plugged = base .. '/plug/plugged'
  local dir = checkout(plugged .. '/scanmint')
  -- vim-plug clones 'owner/name' into plugged/name and puts name/<rtp> on 'runtimepath' at
  -- plug#end(), which also runs :helptags on its doc folder.
  local fake = base .. '/plug/fake-plug.vim'
  vim.fn.writefile({
    'let s:plugs = []',
    'function! PlugBegin(dir) abort',
    '  let s:dir = a:dir',
    'endfunction',
    'function! s:plug(repo, ...) abort',
    "  let l:opts = a:0 ? a:1 : {}",
    "  call add(s:plugs, s:dir . '/' . split(a:repo, '/')[-1] . '/' . get(l:opts, 'rtp', ''))",
    'endfunction',
    'command! -nargs=+ Plug call s:plug(<args>)',
    'function! PlugEnd() abort',
    '  for l:p in s:plugs',
    "    execute 'set rtp+=' . fnameescape(l:p)",
    "    execute 'helptags ' . fnameescape(l:p . '/doc')",
    '  endfor',
    'endfunction',
  }, fake)
  local init = base .. '/plug/init.vim'
  local lines = {
    'source ' .. fake,
    ('call PlugBegin(%s)'):format(vim.fn.string(plugged)),
  }
  for _, l in ipairs(vim.split(readme_block('**vim-plug**', 'vim'), '\n', { trimempty = true })) do
    if l:match('^%s*"') then
      lines[#lines + 1] = 'call PlugEnd()' -- "after call plug#end():"
    else
      lines[#lines + 1] = l
    end
  end
  vim.fn.writefile(lines, init)
  run_check(
    { '--headless', '-i', 'NONE', '-u', init, '-c', 'luafile ' .. check_script },
    { SCANMINT_PLUGIN_DIR = dir }
  )
end)

h.finish()
