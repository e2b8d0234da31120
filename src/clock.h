/*
** Clocks. Plain C, no Lua (base layer: doc/design.md, "Layers").
*/
#ifndef OPENROUTER_CLOCK_H
#define OPENROUTER_CLOCK_H

double or_monotonic(void);  /* seconds, for intervals */
double or_epoch(void);      /* seconds since 1970, for HTTP dates */

#endif
