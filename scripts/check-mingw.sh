#!/bin/sh
# Cross-compiles the C core for Windows with MinGW-w64 (Debian's gcc-mingw-w64-x86-64),
# every file of src/ warning-free, C99: the Windows branches of src/platform.c and the
# rest of the core compile there. Compile only: Debian ships no Windows import libraries
# for Lua and libcurl to link a DLL against (a Windows build with LuaRocks links them).
#   scripts/check-mingw.sh [LUA_INCLUDE_DIR]   (default /usr/include/lua5.4)
set -eu
CC=x86_64-w64-mingw32-gcc
LUA_INC=${1:-/usr/include/lua5.4}
OUT=build/mingw
# curl's headers are portable; only curl/ is taken from the Linux tree, so that MinGW's
# own system headers are the ones found
CURL_H=$(dirname "$(find /usr/include -name curl.h -path '*curl/curl.h' | head -n 1)")
mkdir -p "$OUT/include"
ln -sfn "$CURL_H" "$OUT/include/curl"
status=0
for f in src/*.c; do
  o="$OUT/$(basename "$f" .c).o"
  if ! $CC -std=c99 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror \
       -O2 -DCURL_STATICLIB -I"$OUT/include" -I"$LUA_INC" -c "$f" -o "$o"; then
    echo "FAIL: $f"
    status=1
  fi
done
[ $status -eq 0 ] && echo "mingw: $(ls src/*.c | wc -l) files compiled for Windows (x86_64-w64-mingw32)"
exit $status
