/*
** What differs between operating systems, behind one function each: clocks,
** the system's random source, case-insensitive comparison (strings.h is
** POSIX), opening a socket with the error that explains a failure (EMFILE).
** Plain C, no Lua (base layer: doc/design.md, "Layers"). Everything else in
** the core is C99 and libcurl.
*/
#ifndef OPENROUTER_PLATFORM_H
#define OPENROUTER_PLATFORM_H

#include <stddef.h>
#include <curl/curl.h>

double or_monotonic(void);  /* seconds, for intervals */
double or_epoch(void);      /* seconds since 1970, for HTTP dates */

/* strncasecmp for ASCII: header names and media types. */
int or_strncasecmp(const char *a, const char *b, size_t n);

/* Opens a socket as libcurl would; on failure sets *error to the reason that
** says what to do about it: OR_ERR_TOO_MANY_FILES (the process's or the
** system's descriptors are all in use), else 0. */
#define OR_ERR_TOO_MANY_FILES 1
#define OR_ERR_TOO_MANY_FILES_SYSTEM 2
curl_socket_t or_open_socket(int family, int type, int protocol, int *error);

/* Fills buf with n bytes from the system's cryptographic random source:
** BCryptGenRandom on Windows, getrandom() on Linux (glibc 2.25+), else
** /dev/urandom. Returns 0, or -1 when the source failed (buf then holds
** nothing usable). */
int or_random_bytes(void *buf, size_t n);

#endif
