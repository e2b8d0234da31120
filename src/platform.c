/*
** Platform-specific code: the random source for OAuth PKCE verifiers.
*/
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE  /* getrandom's declaration on older glibc */
#endif
#include "platform.h"

#include <stdio.h>

#if defined(_WIN32)
#include <windows.h>
#include <bcrypt.h>

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

#if defined(__linux__) && defined(__GLIBC__) \
    && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 25))
#include <errno.h>
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
