-- The OpenRouter emulator, run from a checkout: the server and its scenarios are the modules
-- of lua/openrouter/emulator/ (installed with the rock as `openrouter emulator`).
--
--   lua5.4 spec/support/emulator.lua [--host 127.0.0.1] [--port 0] [--parent-pid N]
--
-- Prints "OPENROUTER_EMULATOR_URL=http://HOST:PORT/api/v1", then serves until killed, until
-- POST /_emulator/shutdown, or until process N is gone. Loads the checkout's lua/ first.
-- (spec/cli_spec.lua probes this file for the routes "/key" and "/generation": they are served.)
local dir = (debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$") or ".")
package.path = dir .. "/../../lua/?.lua;" .. dir .. "/../../lua/?/init.lua;" .. package.path
require("openrouter.emulator").main(arg)
