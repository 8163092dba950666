/* log.h — leveled logging to stderr; the level comes from the PULSING_LOG environment variable. */
#ifndef PUL_CORE_LOG_H
#define PUL_CORE_LOG_H

enum { PUL__LOG_OFF = 0, PUL__LOG_ERROR, PUL__LOG_WARN, PUL__LOG_INFO, PUL__LOG_DEBUG };

/* Current level (PULSING_LOG=off|error|warn|info|debug, default warn). Any thread. */
int pul__log_level(void);
/* Write one line "pulsing <level> <module>: ..." when level <= the current level. Any thread. */
void pul__log(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define PUL__LOG(level, module, ...)                \
    do {                                            \
        if ((level) <= pul__log_level()) {          \
            pul__log((level), (module), __VA_ARGS__); \
        }                                           \
    } while (0)

#endif
