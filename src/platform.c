/*
** Platform-specific code (see platform.h): each function has a Windows branch
** and a POSIX one.
*/
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE  /* getrandom's declaration on older glibc */
#endif
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L  /* clock_gettime */
#endif
#include "platform.h"

#include <ctype.h>
#include <stdio.h>

int or_strncasecmp(const char *a, const char *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    int ca = tolower((unsigned char)a[i]), cb = tolower((unsigned char)b[i]);
    if (ca != cb) return ca - cb;
    if (ca == 0) return 0;
  }
  return 0;
}

#if defined(_WIN32)
#include <winsock2.h>
#include <windows.h>
#include <bcrypt.h>

double or_monotonic(void) {
  LARGE_INTEGER now, freq;
  QueryPerformanceCounter(&now);
  QueryPerformanceFrequency(&freq);
  return (double)now.QuadPart / (double)freq.QuadPart;
}

double or_epoch(void) {
  FILETIME ft;
  ULARGE_INTEGER t;
  GetSystemTimeAsFileTime(&ft);  /* 100 ns since 1601 */
  t.LowPart = ft.dwLowDateTime;
  t.HighPart = ft.dwHighDateTime;
  return (double)(t.QuadPart - 116444736000000000ULL) / 1e7;
}

curl_socket_t or_open_socket(int family, int type, int protocol, int *error) {
  SOCKET fd = socket(family, type, protocol);
  *error = fd == INVALID_SOCKET && WSAGetLastError() == WSAEMFILE ? OR_ERR_TOO_MANY_FILES : 0;
  return (curl_socket_t)fd;
}

int or_random_bytes(void *buf, size_t n) {
  unsigned char *p = (unsigned char *)buf;
  while (n > 0) {  /* BCryptGenRandom takes a ULONG length */
    ULONG take = n > 0x40000000u ? 0x40000000u : (ULONG)n;
    if (BCryptGenRandom(NULL, p, take, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0) return -1;
    p += take;
    n -= take;
  }
  return 0;
}

#else

#include <errno.h>
#include <sys/socket.h>
#include <time.h>

double or_monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double or_epoch(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

curl_socket_t or_open_socket(int family, int type, int protocol, int *error) {
  curl_socket_t fd = socket(family, type, protocol);
  *error = 0;
  if (fd == CURL_SOCKET_BAD && errno == EMFILE) *error = OR_ERR_TOO_MANY_FILES;
  if (fd == CURL_SOCKET_BAD && errno == ENFILE) *error = OR_ERR_TOO_MANY_FILES_SYSTEM;
  return fd;
}

#if defined(__linux__) && defined(__GLIBC__) \
    && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 25))
#include <sys/random.h>
#define OR_HAVE_GETRANDOM 1
#endif

/* /dev/urandom, unbuffered: a stdio buffer would keep random bytes around. */
static int urandom(unsigned char *p, size_t n) {
  FILE *f = fopen("/dev/urandom", "rb");
  size_t got;
  if (f == NULL) return -1;
  setvbuf(f, NULL, _IONBF, 0);
  got = fread(p, 1, n, f);
  fclose(f);
  return got == n ? 0 : -1;
}

int or_random_bytes(void *buf, size_t n) {
  unsigned char *p = (unsigned char *)buf;
#ifdef OR_HAVE_GETRANDOM
  while (n > 0) {
    ssize_t got = getrandom(p, n, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return urandom(p, n);  /* ENOSYS: a kernel older than 3.17 */
    p += got;
    n -= (size_t)got;
  }
  return 0;
#else
  return urandom(p, n);
#endif
}

#endif
