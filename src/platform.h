/*
** What differs between operating systems, behind one function each: for now
** the system's random source. Plain C, no Lua (base layer: doc/design.md,
** "Layers").
*/
#ifndef OPENROUTER_PLATFORM_H
#define OPENROUTER_PLATFORM_H

#include <stddef.h>

/* Fills buf with n bytes from the system's cryptographic random source:
** BCryptGenRandom on Windows, getrandom() on Linux (glibc 2.25+), else
** /dev/urandom. Returns 0, or -1 when the source failed (buf then holds
** nothing usable). */
int or_random_bytes(void *buf, size_t n);

#endif
