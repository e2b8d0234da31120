/*
** test/alloc/host.c: allocation-failure testing in the spirit of SQLite's.
**
**   host SCRIPT      (make check-alloc builds and runs it)
**
** A Lua 5.4 host whose allocator fails the Nth allocation, and whose libcurl
** allocates through the same counter (curl_global_init_mem: the host owns
** the process, so it may). SCRIPT (test/alloc/scenarios.lua) returns a table
** of scenarios; for each, the host runs it in a fresh Lua state for N = 1, 2,
** ... until a run ends without any failure injected: every allocation the
** scenario's operation makes has then failed once, and each failure must
** have ended in a clean Lua error or nil, err (the script checks that, and
** that the client still works) without a crash, an ASan report or a leak
** (the host is built with -fsanitize=address: LeakSanitizer is checked
** after each scenario). The scenario arms the allocator only around the
** operation under test (arm(n) / disarm()), so its own checks never fail.
**
** Environment: ALLOC_MODE=oneshot (default: the Nth allocation fails, the
** ones after it succeed) or persistent (every one from the Nth fails, until
** disarm); ALLOC_MAX_N (default 20000) and ALLOC_SECONDS (default 90) bound
** each scenario; ALLOC_ONLY=name runs one scenario, ALLOC_FROM=n starts at
** N = n (with ALLOC_MAX_N=n: reproduces one run), ALLOC_TRACE=1 prints the
** stack of each injected failure.
*/
#define _POSIX_C_SOURCE 200809L

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>

/* ---- the failing allocator ---- */

typedef struct fault {
  int armed;
  int persistent;
  int trace;       /* ALLOC_TRACE: print where each injected failure happens */
  long target;     /* the counted allocation that fails, from 1 */
  long count;      /* allocations counted since arm */
  long injected;   /* failures injected since arm */
  /* Lua retries a failed allocation once, at once, after an emergency
  ** collection: the retry fails too, or Lua would never see the failure. */
  int retry_pending;
  const void *retry_ptr;
  size_t retry_osize, retry_nsize;
} fault;

static fault F;

/* Whether this allocation fails. `lua_retry`: a Lua allocation, whose
** identical successor is its emergency retry (not counted again). */
static int inject(const void *ptr, size_t osize, size_t nsize, int lua_retry) {
  if (!F.armed) return 0;
  if (F.retry_pending) {
    F.retry_pending = 0;
    if (lua_retry && ptr == F.retry_ptr && osize == F.retry_osize && nsize == F.retry_nsize)
      return 1;
  }
  F.count++;
  if (F.count < F.target || (F.count > F.target && !F.persistent)) return 0;
  F.injected++;
  if (F.trace) {
    fprintf(stderr, "check-alloc: allocation %ld (%zu bytes%s) fails here:\n", F.count, nsize,
            lua_retry ? ", Lua's" : ", libcurl's");
    __sanitizer_print_stack_trace();
  }
  if (lua_retry) {
    F.retry_pending = 1;
    F.retry_ptr = ptr;
    F.retry_osize = osize;
    F.retry_nsize = nsize;
  }
  return 1;
}

/* Lua's allocator. A new block (ptr NULL: osize is then a type tag) or a
** growing one is an allocation; shrinking and freeing never fail. */
static void *lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  if ((ptr == NULL || nsize > osize) && inject(ptr, osize, nsize, 1)) return NULL;
  return realloc(ptr, nsize);
}

static void *curl_malloc_cb(size_t n) {
  return inject(NULL, 0, n, 0) ? NULL : malloc(n);
}

static void curl_free_cb(void *p) {
  free(p);
}

/* libcurl does not say the old size: every realloc counts */
static void *curl_realloc_cb(void *p, size_t n) {
  return inject(p, 0, n, 0) ? NULL : realloc(p, n);
}

static char *curl_strdup_cb(const char *s) {
  return inject(NULL, 0, strlen(s) + 1, 0) ? NULL : strdup(s);
}

static void *curl_calloc_cb(size_t k, size_t n) {
  if (n != 0 && k > (size_t)-1 / n) return NULL;
  return inject(NULL, 0, k * n, 0) ? NULL : calloc(k, n);
}

/* arm(n [, persistent]): count allocations from now; the nth fails. */
static int l_arm(lua_State *L) {
  long n = (long)luaL_checkinteger(L, 1);
  F.persistent = lua_toboolean(L, 2);
  F.target = n;
  F.count = 0;
  F.injected = 0;
  F.retry_pending = 0;
  F.armed = 1;
  return 0;
}

/* disarm(): stops failing; returns the failures injected and the
** allocations counted since arm. Pushing two integers never allocates. */
static int l_disarm(lua_State *L) {
  F.armed = 0;
  lua_pushinteger(L, F.injected);
  lua_pushinteger(L, F.count);
  return 2;
}

/* ---- one run: a fresh Lua state, the scenario at one N ---- */

#define MAX_LABELS 24

typedef struct stats {
  const char *name;
  long runs, failed, survived, checks_failed, warnings;
  long last_n;
  int complete;       /* a run ended with no failure injected */
  int leaked;
  double seconds;
  char labels[MAX_LABELS][64];
  long label_count[MAX_LABELS];
  char first_warning[160];
} stats;

/* what the death callback prints: where a crash or an ASan report happened
** (a copy: the Lua string it came from is gone by the exit leak check) */
static char current_scenario[64] = "(start-up)";
static long current_n = 0;

static void on_death(void) {
  fprintf(stderr, "\ncheck-alloc: died in scenario '%s' at N = %ld (ALLOC_MODE=%s)\n",
          current_scenario, current_n, F.persistent ? "persistent" : "oneshot");
}

/* Lua 5.4 reports an error in a finalizer as a warning: a finalizer cut
** short by a failed allocation. Counted, the first one kept. */
static void on_warning(void *ud, const char *msg, int tocont) {
  stats *st = (stats *)ud;
  (void)tocont;
  if (st->warnings++ == 0) snprintf(st->first_warning, sizeof st->first_warning, "%s", msg);
}

/* Errors that escape a scenario are failed checks (the operation under test
** runs in its own pcall): stop failing allocations, add a traceback. */
static int on_error(lua_State *L) {
  F.armed = 0;
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

static void count_label(stats *st, const char *label) {
  char cut[sizeof st->labels[0]];
  int i;
  snprintf(cut, sizeof cut, "%s", label); /* compared as kept */
  for (i = 0; i < MAX_LABELS && st->labels[i][0]; i++)
    if (strcmp(st->labels[i], cut) == 0) break;
  if (i == MAX_LABELS) i = MAX_LABELS - 1; /* the last slot takes the overflow */
  if (!st->labels[i][0]) memcpy(st->labels[i], cut, sizeof cut);
  st->label_count[i]++;
}

static lua_State *new_state(stats *st) {
  lua_State *L = lua_newstate(lua_alloc, NULL);
  if (!L) return NULL;
  lua_setwarnf(L, on_warning, st);
  luaL_openlibs(L);
  lua_register(L, "arm", l_arm);
  lua_register(L, "disarm", l_disarm);
  return L;
}

/* Loads SCRIPT and pushes field `name` of the table it returns. */
static int push_script_field(lua_State *L, const char *script, const char *name) {
  if (luaL_loadfile(L, script) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) return 0;
  if (!lua_istable(L, -1)) return 0;
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  return 1;
}

/* Runs scenario st->name at n; returns whether a failure was injected. */
static int run_once(const char *script, const char *url, stats *st, long n, int persistent) {
  lua_State *L = new_state(st);
  int status, injected;
  if (!L || !push_script_field(L, script, "run")) {
    fprintf(stderr, "check-alloc: cannot load %s: %s\n", script, L ? lua_tostring(L, -1) : "no state");
    exit(2);
  }
  F.injected = 0;
  lua_pushcfunction(L, on_error);
  lua_insert(L, -2);
  lua_pushstring(L, st->name);
  lua_pushinteger(L, n);
  lua_pushstring(L, url);
  lua_pushboolean(L, persistent);
  status = lua_pcall(L, 4, 1, -6);
  F.armed = 0;
  injected = F.injected > 0;
  if (status != LUA_OK) {
    st->checks_failed++;
    if (st->checks_failed <= 5)
      fprintf(stderr, "check-alloc: %s, N = %ld: %s\n", st->name, n, lua_tostring(L, -1));
  } else if (injected) {
    st->survived++;
    count_label(st, lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
  }
  lua_close(L); /* finalizers run here, unarmed: ASan sees any use after free */
  return injected;
}

/* ---- the scenarios, each for N = 1, 2, ... ---- */

typedef struct limits {
  long from;         /* the first N: ALLOC_FROM, to reproduce one failure */
  long max_n;
  double seconds;
  int persistent;
} limits;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_stats(const stats *st, const limits *lim) {
  int i;
  printf("%-22s failed %5ld  survived %5ld  checks failed %ld  leaks %s  %6.1f s  ",
         st->name, st->failed, st->survived, st->checks_failed, st->leaked ? "YES" : "none",
         st->seconds);
  if (st->complete)
    printf("complete: N = %ld ran without a failure\n", st->last_n);
  else
    printf("CAPPED at N = %ld (ALLOC_MAX_N %ld, ALLOC_SECONDS %.0f)\n", st->last_n,
           lim->max_n, lim->seconds);
  for (i = 0; i < MAX_LABELS && st->labels[i][0]; i++)
    printf("    %6ld  %s\n", st->label_count[i], st->labels[i]);
  if (st->warnings)
    printf("    %6ld  finalizer errors (Lua warnings), the first: %s\n", st->warnings,
           st->first_warning);
  fflush(stdout);
}

static void run_scenario(const char *script, const char *url, stats *st, const limits *lim) {
  double start = now();
  long n;
  snprintf(current_scenario, sizeof current_scenario, "%s", st->name);
  for (n = lim->from; n <= lim->max_n && now() - start < lim->seconds; n++) {
    current_n = n;
    st->last_n = n;
    st->runs++;
    if (!run_once(script, url, st, n, lim->persistent)) {
      st->complete = 1;
      break;
    }
    st->failed++;
  }
  st->seconds = now() - start;
  snprintf(current_scenario, sizeof current_scenario, "(between scenarios)");
  current_n = 0;
  /* what the closed states left behind: attributed to this scenario */
  st->leaked = __lsan_do_recoverable_leak_check() != 0;
}

static double env_number(const char *name, double fallback) {
  const char *v = getenv(name);
  return v && *v ? atof(v) : fallback;
}

static int init_curl(void) {
  return curl_global_init_mem(CURL_GLOBAL_DEFAULT, curl_malloc_cb, curl_free_cb,
                              curl_realloc_cb, curl_strdup_cb, curl_calloc_cb) == CURLE_OK;
}

/* The control state: starts the emulator (M.start() returns its URL) and
** lists the scenarios (M.names); never armed. */
static lua_State *control_state(const char *script, stats *st, char *url, size_t size) {
  lua_State *L = new_state(st);
  if (!L || !push_script_field(L, script, "start") || lua_pcall(L, 0, 1, 0) != LUA_OK
      || !lua_isstring(L, -1)) {
    fprintf(stderr, "check-alloc: %s: M.start() failed: %s\n", script,
            L ? lua_tostring(L, -1) : "no state");
    exit(2);
  }
  snprintf(url, size, "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  return L;
}

/* Keeps the C modules the scenarios load mapped from run to run (each run's
** lua_close unloads them): leak reports then name their functions (the LSan
** suppressions match cjson's by name), and the module's once-per-process
** state (curl_global_init) stays as a long-lived host has it. */
static void pin_c_modules(lua_State *L) {
  static const char *const names[] = {"cjson", "openrouter.core"};
  size_t i;
  for (i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *path;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushstring(L, names[i]);
    lua_getfield(L, -3, "cpath");
    lua_call(L, 2, 1);
    path = lua_tostring(L, -1);
    if (!path || !dlopen(path, RTLD_NOW | RTLD_NODELETE)) {
      fprintf(stderr, "check-alloc: cannot load the C module %s (%s)\n", names[i],
              path ? dlerror() : "not in package.cpath");
      exit(2);
    }
    lua_pop(L, 2);
  }
}

/* Runs every scenario (or ALLOC_ONLY's); returns how many went wrong. */
static int run_all(const char *script, lua_State *ctl, const char *url, const limits *lim) {
  const char *only = getenv("ALLOC_ONLY");
  int i, n, bad = 0;
  if (!push_script_field(ctl, script, "names") || !lua_istable(ctl, -1)) {
    fprintf(stderr, "check-alloc: %s has no names list\n", script);
    exit(2);
  }
  n = (int)luaL_len(ctl, -1);
  for (i = 1; i <= n; i++) {
    stats *st = calloc(1, sizeof *st);
    lua_rawgeti(ctl, -1, i);
    if (!st || !lua_isstring(ctl, -1)) exit(2);
    st->name = lua_tostring(ctl, -1); /* kept alive by the names table */
    if (!only || !*only || strcmp(only, st->name) == 0) {
      run_scenario(script, url, st, lim);
      print_stats(st, lim);
      bad += st->checks_failed > 0 || st->leaked || st->warnings > 0 || !st->complete;
    }
    lua_pop(ctl, 1);
    free(st);
  }
  lua_pop(ctl, 1);
  return bad;
}

int main(int argc, char **argv) {
  limits lim;
  stats control_stats;
  char url[256];
  lua_State *ctl;
  int bad;
  const char *mode = getenv("ALLOC_MODE");
  if (argc != 2) {
    fprintf(stderr, "usage: %s SCRIPT\n", argv[0]);
    return 2;
  }
  lim.persistent = mode && strcmp(mode, "persistent") == 0;
  lim.from = (long)env_number("ALLOC_FROM", 1);
  lim.max_n = (long)env_number("ALLOC_MAX_N", 20000);
  lim.seconds = env_number("ALLOC_SECONDS", 90);
  F.trace = env_number("ALLOC_TRACE", 0) != 0;
  if (!init_curl()) return 2;
  __sanitizer_set_death_callback(on_death);
  memset(&control_stats, 0, sizeof control_stats);
  ctl = control_state(argv[1], &control_stats, url, sizeof url);
  pin_c_modules(ctl);
  printf("check-alloc: %s mode, each scenario up to N = %ld or %.0f s; libcurl %s\n",
         lim.persistent ? "persistent" : "oneshot", lim.max_n, lim.seconds,
         curl_version_info(CURLVERSION_NOW)->version);
  bad = run_all(argv[1], ctl, url, &lim);
  if (push_script_field(ctl, argv[1], "stop")) lua_pcall(ctl, 0, 0, 0);
  lua_close(ctl);
  curl_global_cleanup();
  printf("check-alloc: %s\n", bad ? "FAILED" : "every injected failure ended cleanly");
  return bad ? 1 : 0;
}
