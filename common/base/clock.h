/* clock.h: monotonic and wall time, inline. Thread-safe. */
#ifndef AFD_CLOCK_H
#define AFD_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t afd_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline double afd_now_s(void) { return (double)afd_now_ns() * 1e-9; }

#endif
