/*
** Time: a monotonic clock for timeouts and retry timers, wall-clock for HTTP dates.
*/
#define _POSIX_C_SOURCE 200809L
#include "clock.h"

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
