/* log.c — leveled logging; PULSING_LOG is read once. */
#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int log_level = PUL__LOG_WARN;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static const char *const log_names[] = {"off", "error", "warn", "info", "debug"};

static void
log_init(void)
{
    const char *e = getenv("PULSING_LOG");
    if (e == NULL) {
        return;
    }
    for (int i = 0; i < (int)(sizeof log_names / sizeof log_names[0]); i++) {
        if (strcmp(e, log_names[i]) == 0) {
            log_level = i;
            return;
        }
    }
    if (strcmp(e, "trace") == 0) {
        log_level = PUL__LOG_DEBUG;
    }
}

int
pul__log_level(void)
{
    pthread_once(&log_once, log_init);
    return log_level;
}

void
pul__log(int level, const char *module, const char *fmt, ...)
{
    if (level > pul__log_level() || level <= PUL__LOG_OFF) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "pulsing %s %s: %s\n", log_names[level], module, line);
}
