/* clock.c — monotonic milliseconds with a fake-clock hook. */
#include "core/clock.h"

#include <stdatomic.h>
#include <time.h>

static atomic_int clock_fake_on;
static atomic_uint_fast64_t clock_fake_now;

uint64_t
pul__now_ms(void)
{
    if (atomic_load_explicit(&clock_fake_on, memory_order_relaxed)) {
        return atomic_load(&clock_fake_now);
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void
pul__clock_fake(int enable, uint64_t start_ms)
{
    atomic_store(&clock_fake_now, start_ms);
    atomic_store(&clock_fake_on, enable != 0);
}

void
pul__clock_advance(uint64_t ms)
{
    atomic_fetch_add(&clock_fake_now, ms);
}

int
pul__clock_is_fake(void)
{
    return atomic_load(&clock_fake_on);
}
