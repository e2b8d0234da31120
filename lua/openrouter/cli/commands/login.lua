-- openrouter login: OAuth PKCE with a one-shot listener on 127.0.0.1; the key is stored.
local args_ = require("openrouter.cli.args")
local errors = require("openrouter.cli.errors")
local keystore = require("openrouter.cli.keystore")
local output = require("openrouter.cli.output")
local request = require("openrouter.cli.request")
local system = require("openrouter.cli.system")

local fail = errors.fail

local M = {
  synopsis = "login [--no-browser]",
  summary = "sign in with OpenRouter in the browser; the key is stored\n"
    .. "in ~/.config/openrouter/key, readable by you only",
  options = { ["--no-browser"] = { "no_browser", "flag" } },
  help = [[
usage: openrouter login [--no-browser]

Signs in with OpenRouter (OAuth PKCE): prints the authorization URL and, on a desktop,
opens it in the browser; after you approve, OpenRouter redirects to a one-shot listener
on 127.0.0.1 (an ephemeral port), the code is exchanged for a new API key, and the key
is stored in $XDG_CONFIG_HOME/openrouter/key (default ~/.config/openrouter/key), a file
only you can read (mode 0600). The tool uses it when neither --api-key nor
$OPENROUTER_API_KEY gives a key. The key is never printed. The wait for the browser
is bounded by --timeout (default 300 s). Needs LuaSocket.

  --no-browser         only print the URL (open it on any machine whose browser can
                       reach this one's 127.0.0.1, or forward the port)
]],
}

local CALLBACK_PAGE = "<!doctype html><title>openrouter</title><p>%s You can close this tab.</p>\n"

-- Opens url in the desktop's browser when there is one (xdg-open under X11 or Wayland,
-- open on macOS); the url is percent-encoded, quoted for the shell all the same.
local function open_browser(url)
  local cmd
  if (os.getenv("DISPLAY") or os.getenv("WAYLAND_DISPLAY") or "") ~= ""
      and system.sh("command -v xdg-open >/dev/null 2>&1") then
    cmd = "xdg-open"
  elseif (system.read_command("uname -s") or ""):find("^Darwin") then
    cmd = "open"
  end
  if cmd then system.sh(cmd .. " " .. system.sh_quote(url) .. " >/dev/null 2>&1 &") end
end

local function query_params(query)
  local params = {}
  for k, v in (query or ""):gmatch("([^&=]+)=([^&]*)") do
    params[k] = v:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  end
  return params
end

-- One HTTP request on the listener, answered; returns its query's code, or nil, why.
local function serve_callback(conn)
  conn:settimeout(5)
  local line = conn:receive("*l") or ""
  repeat local h = conn:receive("*l") until not h or h == ""
  local path, query = line:match("^GET (/[^?%s]*)%??(%S*) HTTP/1%.%d$")
  local params = query_params(query)
  local status, text = "200 OK", "Signed in to OpenRouter: back to the terminal."
  if path ~= "/callback" then
    status, text = "404 Not Found", "Not the sign-in callback."
  elseif not params.code then
    status, text = "400 Bad Request", "Sign-in failed: " .. (params.error or "no code") .. "."
  end
  local body = CALLBACK_PAGE:format((text:gsub("[<&]", "")))
  conn:send("HTTP/1.1 " .. status .. "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: "
    .. #body .. "\r\nConnection: close\r\n\r\n" .. body)
  conn:close()
  if path ~= "/callback" then return nil end
  return params.code, params.error or "the redirect carried no code"
end

-- Waits up to `seconds` for the browser's redirect; returns the code. Short accept
-- timeouts, so that Ctrl-C (lua.c's hook) is seen.
local function wait_for_code(server, seconds)
  local deadline = os.time() + seconds
  while os.time() <= deadline do
    local conn = server:accept()
    if conn then
      local code, why = serve_callback(conn)
      if code then return code end
      if why then fail("api", "sign-in refused: " .. why) end
    end
  end
  fail("timeout", ("no sign-in within %d s (--timeout)"):format(seconds))
end

-- The listener on 127.0.0.1, an ephemeral port: the server and its port.
local function listen()
  local has_socket, socket = pcall(require, "socket")
  if not has_socket then fail("other", "login needs LuaSocket (luarocks install luasocket)") end
  local server = assert(socket.bind("127.0.0.1", 0))
  server:settimeout(0.2)
  local _, port = server:getsockname()
  return server, port
end

-- The browser's part: the URL shown (and opened), the code it brings back.
local function authorize(opts, pkce, server, port)
  local url = require("openrouter").oauth.authorize_url{
    callback_url = ("http://127.0.0.1:%d/callback"):format(port),
    code_challenge = pkce.challenge, code_challenge_method = pkce.method, base_url = opts.base_url }
  io.stderr:write("Open this URL in a browser to sign in to OpenRouter:\n\n  ", url, "\n\n",
    ("Waiting for the redirect to 127.0.0.1:%d (Ctrl-C to stop)...\n"):format(port))
  io.stderr:flush()
  if not opts.no_browser then open_browser(url) end
  local code = wait_for_code(server, opts.timeout or 300)
  server:close()
  return code
end

function M.run(_, opts, args)
  args_.no_args("login", args)
  local path = keystore.path() or fail("other", "neither XDG_CONFIG_HOME nor HOME is set")
  local server, port = listen()
  local pkce, err = require("openrouter").oauth.pkce()
  if not pkce then errors.fail_with(err, opts) end
  local client = request.new_client(opts, true)
  local code = authorize(opts, pkce, server, port)
  local res = request.simple(client, opts, function()
    return client:exchange_code_async{ code = code, code_verifier = pkce.verifier,
      code_challenge_method = pkce.method }
  end)
  if type(res.key) ~= "string" or res.key == "" or res.key:find("%c") then
    fail("decode", "the exchange returned no key")
  end
  local ok, why = keystore.store(path, res.key)
  if not ok then fail("other", why) end
  output.print_line("Signed in. The key is stored in ", path, " (readable by you only).")
end

return M
