/*
 * error.c - the error convention: sotto_strerror() and message helpers.
 *
 * Every failing function returns a negative code from enum sotto_error and,
 * where the caller passed a buffer, a one-line message that names the
 * problem.  These helpers keep the formatting in one place.
 */
#include <stdio.h>

#include "common.h"

const char *sotto_strerror(int code)
{
    switch (code) {
    case SOTTO_OK: return "success";
    case SOTTO_EINVAL: return "invalid argument";
    case SOTTO_ENOMEM: return "out of memory";
    case SOTTO_EIO: return "input/output error";
    case SOTTO_EMODEL: return "corrupt or malformed model";
    case SOTTO_EUNSUPPORTED: return "not supported yet";
    case SOTTO_EAUDIO: return "not decodable audio";
    case SOTTO_EEMPTY: return "audio is empty";
    case SOTTO_ENONFINITE: return "audio contains NaN or infinite samples";
    case SOTTO_ETOOLONG: return "audio is longer than the limit";
    case SOTTO_EINTERNAL: return "internal error";
    default: return "unknown error";
    }
}

int sotto__errf(char *err, size_t cap, int code, const char *fmt, ...)
{
    if (err != NULL && cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return code;
}

void sotto__logf(sotto_log_fn fn, void *user, int level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    if (fn == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fn(user, level, line);
}
