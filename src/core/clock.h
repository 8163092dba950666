/* clock.h — the monotonic clock every timer reads, with a fake clock for deterministic tests. */
#ifndef PUL_CORE_CLOCK_H
#define PUL_CORE_CLOCK_H

#include <stdint.h>

/* Milliseconds on the monotonic clock, or the fake clock when enabled. Any thread. */
uint64_t pul__now_ms(void);
/* Test hook: enable (1) the fake clock starting at start_ms, or disable (0). Any thread. Timers
 * of running systems then fire only when a loop turn sees the fake time pass their due time
 * (see pul__system_poke). */
void pul__clock_fake(int enable, uint64_t start_ms);
/* Advance the fake clock by ms. Any thread. */
void pul__clock_advance(uint64_t ms);
int pul__clock_is_fake(void);

#endif
