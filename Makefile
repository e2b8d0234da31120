# openrouter for Lua: development Makefile.
#   make test            install what is missing, build, run the busted suite (lua5.4)
#   make test LUA=luajit the same under LuaJIT (also lua5.1)
#   make demo            a conversation against the local emulator (or the real API
#                        when OPENROUTER_API_KEY is set)
#   make emulator        run the local OpenRouter emulator in the foreground
# Users install with LuaRocks instead (see README.md).

LUA      ?= lua5.4
BUILD    := build/$(LUA)
MODULE   := $(BUILD)/openrouter/core.so
SOURCES  := $(wildcard src/*.c)
HEADERS  := $(wildcard src/*.h)
OBJECTS  := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SOURCES))

# pkg-config names and Debian packages for each interpreter
ifeq ($(LUA),luajit)
  LUA_PC  := luajit
  LUA_PKG := luajit libluajit-5.1-dev
else ifeq ($(LUA),lua5.1)
  LUA_PC  := lua5.1
  LUA_PKG := lua5.1 liblua5.1-0-dev
else
  LUA_PC  := $(LUA)
  LUA_PKG := $(LUA) lib$(LUA)-dev
endif
# What building the module needs, and nothing more: `make` installs only this.
BUILD_PKGS := gcc make pkg-config libcurl4-openssl-dev lua-cjson $(LUA_PKG)
# What the suite needs besides, installed by `make test` (and the other test targets)
# before it runs: busted, LuaSocket (the emulator); the host tests run Neovim and LÖVE
# (both on LuaJIT) under Xvfb, and a real libuv loop (lua-luv: 5.1-5.4 and LuaJIT)
HOST_PKGS := luajit libluajit-5.1-dev neovim love xvfb xauth lua-luv
# TLS, proxy and HTTP/2 specs: a test CA (openssl), a TLS front (socat), an HTTP proxy
# (tinyproxy), an h2 TLS front (nginx: Debian 12's light package, the binary alone)
NET_PKGS := openssl socat tinyproxy-bin nginx
# the CLI's interactive mode is tested in a real terminal
CLI_PKGS := tmux
TEST_PKGS := lua-busted lua-socket $(HOST_PKGS) $(NET_PKGS) $(CLI_PKGS)
# Packages only some targets need: they set EXTRA_PKGS for themselves (and so for deps).
# The sanitizer builds need clang (its ASan/UBSan runtimes come with it); the
# allocation-failure host embeds Lua 5.4.
SANITIZER_PKGS := clang
ALLOC_PKGS := $(SANITIZER_PKGS) lua5.4 liblua5.4-dev

# The one place packages are installed: the Debian packages of $(1) that are missing
# (root on Debian, or through sudo; a no-op when all are there).
define install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

CC       ?= cc
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS   ?= -O2 -g
ALL_CFLAGS = -std=c99 -fPIC $(WARN) $(CFLAGS) $(shell pkg-config --cflags $(LUA_PC) libcurl 2>/dev/null)
# A Lua C module never links liblua: the host provides the symbols.
LDFLAGS_SO = -shared $(LDFLAGS)
LIBS     = $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)

BUSTED   = $(LUA) $(shell command -v busted || echo /usr/bin/busted)
LUA_PATH_DEV = lua/?.lua;lua/?/init.lua;./?.lua;;
LUA_CPATH_DEV = $(BUILD)/?.so;;

.PHONY: all build-deps deps host-module test demo emulator clean rock check-valgrind check-asan check-layers \
  check-mingw fuzz soak bench docs
.PHONY: asan-module check-gc gc-runs check-alloc

all: $(MODULE)

# build-deps: what building needs; deps: what the suite needs too (and EXTRA_PKGS).
build-deps:
	$(call install,$(BUILD_PKGS))
deps:
	$(call install,$(BUILD_PKGS) $(TEST_PKGS) $(EXTRA_PKGS))

$(BUILD)/obj/%.o: src/%.c $(HEADERS) | build-deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(MODULE): $(OBJECTS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_SO) -o $@ $(OBJECTS) $(LIBS)

# Neovim and LÖVE load the LuaJIT build, whatever LUA is.
host-module: build-deps
	@$(MAKE) --no-print-directory LUA=luajit all

test: deps $(MODULE) host-module
	LUA_PATH='$(LUA_PATH_DEV)' LUA_CPATH='$(LUA_CPATH_DEV)' OPENROUTER_EMULATOR_LUA=$(LUA) \
	  $(BUSTED) --lpath='$(LUA_PATH_DEV)' --cpath='$(LUA_CPATH_DEV)' $(BUSTED_ARGS) spec

demo: build-deps $(MODULE)
	$(call install,lua-socket)
	LUA_PATH='$(LUA_PATH_DEV)' LUA_CPATH='$(LUA_CPATH_DEV)' OPENROUTER_EMULATOR_LUA=$(LUA) \
	  $(LUA) examples/demo.lua

emulator: build-deps
	$(call install,lua-socket $(LUA_PKG))
	$(LUA) spec/support/emulator.lua

# Installs the rock for Lua 5.1 and 5.4 into one scratch tree, then runs the installed
# command with an empty environment, on each Lua: --version, and a chat with the emulator;
# a tree without the C module must fail. Whatever LUA is, both are tested.
ROCK_TREE := build/rock-tree
# run from an empty directory: not from here, where luarocks make leaves openrouter/core.so
ROCK_ENV = cd build/rock-home && env -i PATH=/usr/bin:/bin HOME=$(CURDIR)/build/rock-home
rock: EXTRA_PKGS = luarocks lua5.1 liblua5.1-0-dev lua5.4 liblua5.4-dev
rock: deps
	rm -rf $(ROCK_TREE) build/rock-home build/rock-broken && mkdir -p build/rock-home
	for v in 5.1 5.4; do \
	  luarocks --lua-version=$$v make --deps-mode=none --tree $(ROCK_TREE) openrouter-scm-1.rockspec \
	    >build/rock-$$v.log 2>&1 || { cat build/rock-$$v.log; exit 1; }; done
	@# the second install keeps the first copy of the shared command as openrouter~: the same file
	cmp $(ROCK_TREE)/bin/openrouter $(ROCK_TREE)/bin/openrouter~ && rm $(ROCK_TREE)/bin/openrouter~
	@set -e; tree=$(CURDIR)/$(ROCK_TREE); home=$(CURDIR)/build/rock-home; \
	LUA_PATH='$(LUA_PATH_DEV)' lua5.4 spec/support/emulator.lua --host 127.0.0.1 --port 0 \
	  --parent-pid $$$$ >build/rock-emulator.out 2>/dev/null & emu=$$!; trap 'kill $$emu' EXIT; \
	for i in $$(seq 100); do url=$$(sed -n 's/^OPENROUTER_EMULATOR_URL=//p' build/rock-emulator.out); \
	  [ -n "$$url" ] && break; sleep 0.05; done; \
	for v in 5.1 5.4 default; do \
	  run="env -i PATH=/usr/bin:/bin HOME=$$home $$([ $$v = default ] || echo OPENROUTER_LUA=$$v) $$tree/bin/openrouter"; \
	  version=$$(cd $$home && $$run --version); echo "$$v: $$version"; \
	  case "$$version" in "openrouter "*" (libcurl "*", Lua $${v%default}"*) ;; *) exit 1;; esac; \
	  reply=$$(cd $$home && $$run --base-url "$$url" --api-key sk-or-v1-rock-check chat -m openai/gpt-4o-mini hi $$v); \
	  echo "$$v: chat: $$reply"; [ "$$reply" = "Echo: hi $$v" ]; done
	@cp -r $(ROCK_TREE) build/rock-broken && rm build/rock-broken/lib/lua/5.4/openrouter/core.so; \
	if ($(ROCK_ENV) OPENROUTER_LUA=5.4 ../rock-broken/bin/openrouter --version) 2>build/rock-broken.err; then \
	  echo "a tree without openrouter.core: --version succeeded"; exit 1; fi; \
	grep "^openrouter: other error: .*module 'openrouter.core' not found" build/rock-broken.err
	rm -rf build/rock-broken

# The C core's layers (doc/design.md, "Layers"): no upward call, no circle between files,
# no function over 60 lines, from the object files' symbols.
check-layers: $(MODULE)
	$(LUA) scripts/check-layers.lua $(BUILD)/obj src

# The core cross-compiled for Windows with MinGW-w64, warning-free (compile only: Debian
# has no Windows import libraries for Lua and libcurl to link against).
check-mingw: build-deps
	$(call install,gcc-mingw-w64-x86-64 liblua5.4-dev)
	scripts/check-mingw.sh /usr/include/lua5.4

# The whole suite under valgrind memcheck: any error or definite leak fails the run.
VALGRIND = valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
  --keep-debuginfo=yes --suppressions=spec/support/valgrind.supp
check-valgrind: EXTRA_PKGS = valgrind
check-valgrind: deps $(MODULE) host-module
	LUA_PATH='$(LUA_PATH_DEV)' LUA_CPATH='$(LUA_CPATH_DEV)' OPENROUTER_EMULATOR_LUA=$(LUA) \
	  $(VALGRIND) $(BUSTED) --lpath='$(LUA_PATH_DEV)' --cpath='$(LUA_CPATH_DEV)' $(BUSTED_ARGS) spec

# The core built with AddressSanitizer and UndefinedBehaviorSanitizer (clang), the whole
# suite run against it. The interpreter is not instrumented: the ASan runtime is preloaded.
ASAN_BUILD := build/asan-$(LUA)
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
ASAN_MODULE := $(ASAN_BUILD)/openrouter/core.so
$(ASAN_MODULE): $(SOURCES) $(HEADERS) | build-deps
	@mkdir -p $(dir $@)
	clang -std=c99 -fPIC -shared $(WARN) $(ASAN_FLAGS) $(shell pkg-config --cflags $(LUA_PC) libcurl) \
	  -o $@ $(SOURCES) $(LIBS)
asan-module: EXTRA_PKGS = $(SANITIZER_PKGS)
asan-module: deps $(ASAN_MODULE)
check-asan: EXTRA_PKGS = $(SANITIZER_PKGS)
check-asan: deps host-module $(ASAN_MODULE)
	LUA_PATH='$(LUA_PATH_DEV)' LUA_CPATH='$(ASAN_BUILD)/?.so;;' OPENROUTER_EMULATOR_LUA=$(LUA) \
	  LD_PRELOAD="$$(clang -print-file-name=libclang_rt.asan-x86_64.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(BUSTED) --lpath='$(LUA_PATH_DEV)' --cpath='$(ASAN_BUILD)/?.so;;' $(BUSTED_ARGS) spec

# Collector stress (spec/support/gc_stress.lua): the whole suite with the collector at its
# most aggressive, one busted run per GC_RUNS entry, written interpreter:mode[:hook] (hook:
# also a collector step every that many VM instructions); asan-lua5.4 is lua5.4 against the
# ASan/UBSan core. Only the busted process is stressed, never the emulator. Every run goes
# on when one fails; the target fails if any did. Lua 5.1 runs without the count hook: with
# a step every 1000 instructions its run took 372 s of the 12 minutes the regime may take
# (108 s without; a dropped object is still finalized within ~1,200 allocations).
GC_RUNS ?= lua5.4:incremental lua5.4:generational:10 lua5.1:incremental \
  luajit:incremental:1000 asan-lua5.4:incremental
# Skipped under stress, by name (busted --filter-out, a Lua pattern): a spec timing the gaps
# between chunk arrivals in busted's own process, which the stress slows (it saw 8 ms, wants
# 12); and, against the ASan core, the RSS bound after a 50 MB reply is dropped: ASan's
# quarantine keeps up to 256 MB of freed memory resident by design (203 MB measured).
GC_FILTER_OUT := a.few.ms.apart
GC_ASAN_FILTER_OUT := memory.comes.back
GC_LUAS = $(sort $(foreach r,$(GC_RUNS),$(firstword $(subst :, ,$(r)))))
BUSTED_BIN = $(shell command -v busted || echo /usr/bin/busted)
gc-runs:
	@echo $(GC_RUNS)
check-gc: EXTRA_PKGS = $(SANITIZER_PKGS)
check-gc: deps host-module
	@# a spec that retunes the collector would silently undo the stress
	@! grep -nE "collectgarbage\(['\"](incremental|generational|setpause|setstepmul|stop)" spec/*.lua
	@for lua in $(filter-out asan-%,$(GC_LUAS)); do $(MAKE) --no-print-directory LUA=$$lua all || exit 1; done
	@for lua in $(patsubst asan-%,%,$(filter asan-%,$(GC_LUAS))); do \
	  $(MAKE) --no-print-directory LUA=$$lua asan-module || exit 1; done
	@failed=""; for run in $(GC_RUNS); do \
	  set -- $$(echo $$run | tr : ' '); build=$$1; lua=$${1#asan-}; mode=$$2; hook=$${3:-}; \
	  preload=""; skip=""; [ "$$build" = "$$lua" ] || { skip="--filter-out=$(GC_ASAN_FILTER_OUT)"; \
	    preload="$$(clang -print-file-name=libclang_rt.asan-x86_64.so)"; }; \
	  echo "== check-gc $$run"; start=$$(date +%s); \
	  LUA_PATH='$(LUA_PATH_DEV)' LUA_CPATH="build/$$build/?.so;;" OPENROUTER_EMULATOR_LUA=$$lua \
	    OPENROUTER_GC_STRESS=$$mode OPENROUTER_GC_STRESS_HOOK=$$hook LD_PRELOAD="$$preload" \
	    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    $$lua $(BUSTED_BIN) --lpath='$(LUA_PATH_DEV)' --cpath="build/$$build/?.so;;" \
	      --helper=spec/support/gc_stress.lua --filter-out=$(GC_FILTER_OUT) $$skip $(BUSTED_ARGS) spec \
	      || failed="$$failed $$run"; \
	  echo "== check-gc $$run: $$(( $$(date +%s) - start )) s"; \
	done; [ -z "$$failed" ] || { echo "check-gc failed:$$failed"; exit 1; }

# Allocation failure (test/alloc/): a Lua 5.4 host, built with ASan, whose allocator and
# libcurl's fail the Nth allocation, runs each scenario of test/alloc/scenarios.lua for
# N = 1, 2, ... against the emulator until a run sees no failure; any crash, ASan report,
# leak or unclean outcome fails. ALLOC_MODE=oneshot|persistent; ALLOC_SECONDS bounds each
# scenario (ALLOC_MAX_N its N), ALLOC_ONLY runs one (see test/alloc/host.c).
ALLOC_HOST := build/alloc/host
ALLOC_MODE ?= oneshot
ALLOC_SECONDS ?= 60
$(ALLOC_HOST): test/alloc/host.c | build-deps
	@mkdir -p $(dir $@)
	clang -std=c99 $(WARN) $(ASAN_FLAGS) $(shell pkg-config --cflags lua5.4 libcurl) -o $@ $< \
	  $(shell pkg-config --libs lua5.4 libcurl) -ldl
check-alloc: EXTRA_PKGS = $(ALLOC_PKGS)
check-alloc: deps
	@$(MAKE) --no-print-directory LUA=lua5.4 asan-module $(ALLOC_HOST)
	LUA_PATH='$(LUA_PATH_DEV)' LUA_CPATH='build/asan-lua5.4/?.so;;' \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  LSAN_OPTIONS=suppressions=test/alloc/lsan.supp:print_suppressions=0 \
	  ALLOC_MODE=$(ALLOC_MODE) ALLOC_SECONDS=$(ALLOC_SECONDS) $(ALLOC_HOST) test/alloc/scenarios.lua

# libFuzzer targets for the plain-C parts (fuzz/): FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz: deps
	$(MAKE) -C fuzz run FUZZ_SECONDS=$(FUZZ_SECONDS)

# 100,000 mixed requests against the emulator; prints RSS at start and end.
SOAK_REQUESTS ?= 100000
soak: build-deps $(MODULE)
	$(call install,lua-socket)
	LUA_PATH='$(LUA_PATH_DEV)' LUA_CPATH='$(LUA_CPATH_DEV)' OPENROUTER_EMULATOR_LUA=$(LUA) \
	  $(LUA) scripts/soak.lua $(SOAK_REQUESTS)

# The HTML API reference (LDoc, from the doc comments) into docs/.
docs: EXTRA_PKGS = lua-ldoc lua-markdown
docs: deps
	ldoc .
	@echo "API reference: docs/index.html"

# The emulator against the API's own OpenAPI description (../shared/reference/) and the
# official SDK (test/fidelity/check.mjs): node and npm from Debian, ajv, yaml and
# @openrouter/sdk as test/fidelity/package-lock.json pins them. Fails on any violation.
.PHONY: check-fidelity
FIDELITY_MODULES := test/fidelity/node_modules/.package-lock.json
$(FIDELITY_MODULES): test/fidelity/package-lock.json test/fidelity/package.json
	@# Debian's node and npm, unless a node is already there (installing npm over another
	@# node's packages fails)
	@command -v node >/dev/null && command -v npm >/dev/null || $(MAKE) --no-print-directory node-pkgs
	cd test/fidelity && npm ci --no-audit --no-fund --loglevel=error
	@touch $@
.PHONY: node-pkgs
node-pkgs:
	$(call install,nodejs npm)
check-fidelity: deps $(FIDELITY_MODULES)
	node test/fidelity/check.mjs --lua $(LUA)

# Benchmarks against the alternatives (bench/): writes bench/results.md.
bench: deps $(MODULE)
	@$(MAKE) --no-print-directory LUA=lua5.4 all
	@$(MAKE) --no-print-directory LUA=luajit all
	bench/run

clean:
	rm -rf build
