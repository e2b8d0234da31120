rockspec_format = "3.0"
package = "openrouter"
version = "scm-1"

source = {
  url = "git+https://example.invalid/openrouter-lua.git",
}

description = {
  summary = "OpenRouter API client for Lua, in C over libcurl: streaming, retries, conversations",
  detailed = [[
    require("openrouter") talks to the OpenRouter API (hundreds of LLMs behind one
    HTTP API) from plain Lua, Neovim, LÖVE or Defold: models, completions, chat
    completions with incremental SSE streaming parsed in C, credits, structured
    errors, retries with backoff, keep-alive connections and timeouts.
  ]],
  license = "MIT",
  labels = { "llm", "openrouter", "http", "curl", "sse" },
}

dependencies = {
  "lua >= 5.1",
  "lua-cjson",
}

-- A library check only: the header check fails on Debian's multiarch layout
-- (curl.h lives in /usr/include/<triplet>/). Override with CURL_DIR=... or
-- CURL_INCDIR=... / CURL_LIBDIR=... when libcurl is elsewhere.
external_dependencies = {
  platforms = {
    windows = { CURL = { header = "curl/curl.h", library = "libcurl" } },
    unix = { CURL = { library = "curl" } },
  },
}

build = {
  type = "builtin",
  modules = {
    ["openrouter"] = "lua/openrouter/init.lua",
    ["openrouter.async"] = "lua/openrouter/async.lua",
    -- the command-line tool (bin/openrouter runs openrouter.cli)
    ["openrouter.cli.init"] = "lua/openrouter/cli/init.lua",
    ["openrouter.cli.args"] = "lua/openrouter/cli/args.lua",
    ["openrouter.cli.errors"] = "lua/openrouter/cli/errors.lua",
    ["openrouter.cli.interactive"] = "lua/openrouter/cli/interactive.lua",
    ["openrouter.cli.keystore"] = "lua/openrouter/cli/keystore.lua",
    ["openrouter.cli.output"] = "lua/openrouter/cli/output.lua",
    ["openrouter.cli.request"] = "lua/openrouter/cli/request.lua",
    ["openrouter.cli.system"] = "lua/openrouter/cli/system.lua",
    ["openrouter.cli.commands.chat"] = "lua/openrouter/cli/commands/chat.lua",
    ["openrouter.cli.commands.complete"] = "lua/openrouter/cli/commands/complete.lua",
    ["openrouter.cli.commands.credits"] = "lua/openrouter/cli/commands/credits.lua",
    ["openrouter.cli.commands.emulator"] = "lua/openrouter/cli/commands/emulator.lua",
    ["openrouter.cli.commands.generation"] = "lua/openrouter/cli/commands/generation.lua",
    ["openrouter.cli.commands.help"] = "lua/openrouter/cli/commands/help.lua",
    ["openrouter.cli.commands.key"] = "lua/openrouter/cli/commands/key.lua",
    ["openrouter.cli.commands.login"] = "lua/openrouter/cli/commands/login.lua",
    ["openrouter.cli.commands.logout"] = "lua/openrouter/cli/commands/logout.lua",
    ["openrouter.cli.commands.models"] = "lua/openrouter/cli/commands/models.lua",
    ["openrouter.conversation"] = "lua/openrouter/conversation.lua",
    -- the OpenRouter emulator (`openrouter emulator`): needs LuaSocket and lua-cjson, which
    -- the library does not
    ["openrouter.emulator.init"] = "lua/openrouter/emulator/init.lua",
    ["openrouter.emulator.audio"] = "lua/openrouter/emulator/audio.lua",
    ["openrouter.emulator.auth"] = "lua/openrouter/emulator/auth.lua",
    ["openrouter.emulator.catalogue"] = "lua/openrouter/emulator/catalogue.lua",
    ["openrouter.emulator.chat"] = "lua/openrouter/emulator/chat.lua",
    ["openrouter.emulator.checks"] = "lua/openrouter/emulator/checks.lua",
    ["openrouter.emulator.embeddings"] = "lua/openrouter/emulator/embeddings.lua",
    ["openrouter.emulator.faults"] = "lua/openrouter/emulator/faults.lua",
    ["openrouter.emulator.generations"] = "lua/openrouter/emulator/generations.lua",
    ["openrouter.emulator.http"] = "lua/openrouter/emulator/http.lua",
    ["openrouter.emulator.images"] = "lua/openrouter/emulator/images.lua",
    ["openrouter.emulator.keyleaks"] = "lua/openrouter/emulator/keyleaks.lua",
    ["openrouter.emulator.keys"] = "lua/openrouter/emulator/keys.lua",
    ["openrouter.emulator.replies"] = "lua/openrouter/emulator/replies.lua",
    ["openrouter.emulator.responses"] = "lua/openrouter/emulator/responses.lua",
    ["openrouter.emulator.rich"] = "lua/openrouter/emulator/rich.lua",
    ["openrouter.emulator.util"] = "lua/openrouter/emulator/util.lua",
    ["openrouter.health"] = "lua/openrouter/health.lua",
    ["openrouter.media"] = "lua/openrouter/media.lua",
    ["openrouter.models"] = "lua/openrouter/models.lua",
    ["openrouter.nvim"] = "lua/openrouter/nvim.lua",
    ["openrouter.oauth"] = "lua/openrouter/oauth.lua",
    ["openrouter.shared"] = "lua/openrouter/shared.lua",
    ["openrouter.transcription"] = "lua/openrouter/transcription.lua",
    ["openrouter.uv"] = "lua/openrouter/uv.lua",
    ["openrouter.core"] = {
      sources = {
        "src/actions.c", "src/base64.c", "src/buffer.c", "src/client.c",
        "src/compat.c", "src/config.c", "src/core.c", "src/driver.c", "src/errmap.c",
        "src/errors.c", "src/json.c", "src/loop.c", "src/outcome.c", "src/platform.c",
        "src/request.c", "src/sha256.c", "src/sse.c", "src/stream.c", "src/transfer.c",
      },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "$(CURL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)" },
      libraries = { "curl" },
    },
  },
  platforms = {
    windows = {
      -- bcrypt: BCryptGenRandom, the random source of OAuth PKCE verifiers (src/platform.c)
      modules = { ["openrouter.core"] = { libraries = { "libcurl", "ws2_32", "bcrypt" } } },
    },
  },
  install = {
    bin = { openrouter = "bin/openrouter" },
  },
}

-- bin/openrouter is installed as it is, not behind a LuaRocks wrapper: a wrapper names one
-- interpreter and the paths of one Lua version, and the 5.1 and 5.4 builds of one tree share
-- bin/. The script finds the tree it is in and runs with a Lua whose build is there
-- ($OPENROUTER_LUA picks one); see README.md, "Command line".
deploy = {
  wrap_bin_scripts = false,
}

test = {
  type = "command",
  command = "make test",
}
