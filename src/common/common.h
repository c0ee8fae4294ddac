/*
 * common.h - helpers shared by every part of libsotto (internal).
 *
 * Names with the sotto__ prefix are internal to the library and may change
 * at any time; only include/sotto.h is public.
 */
#ifndef SOTTO_COMMON_H
#define SOTTO_COMMON_H

#include <stdarg.h>
#include <stddef.h>

#include "sotto.h"

/* Writes a formatted one-line message into err (capacity cap, may be NULL
 * or 0) and returns code, so callers can write
 *     return sotto__errf(err, cap, SOTTO_EMODEL, "bad %s", what);  */
int sotto__errf(char *err, size_t cap, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Calls the log callback, if any, with a formatted line. */
void sotto__logf(sotto_log_fn fn, void *user, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Checks 16 kHz PCM handed to the engine: not empty, not longer than
 * SOTTO_MAX_AUDIO_SECONDS, every sample finite.  Returns 0 or SOTTO_EEMPTY,
 * SOTTO_ETOOLONG or SOTTO_ENONFINITE with a message naming the sample. */
int sotto__validate_pcm(const float *pcm, size_t n, char *err, size_t errcap);

#define SOTTO__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
