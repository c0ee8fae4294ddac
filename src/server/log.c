/*
 * log.c - the log lines of `sotto serve`, and its monotonic clock.
 *
 * Every process of the server writes its log to stderr, which they all
 * share, one line per event:
 *
 *   2026-11-28T03:50:00.123Z INFO  gateway[1234] stream=17: message
 *
 * The time is UTC with milliseconds; the level is padded to five columns;
 * "stream=N" is left out for stream 0.  A line is at most LOG_MAX_LINE
 * bytes, newline included: longer messages are cut.  Control characters in
 * the message (a newline in a reason a client sent, say) are replaced, so
 * that one call is always one line and nobody can forge a line.  Each line
 * goes out in a single write(2), which keeps lines of different processes
 * and threads from interleaving (stderr writes up to PIPE_BUF are atomic on
 * pipes; on terminals and files they are in practice).
 *
 * State: the role, the pid and the level are file-static, set by
 * sotto__log_init() once in each process (the supervisor, and each child
 * right after fork) before it starts any thread, and only read afterwards.
 * They are the only mutable static state of this file.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sotto.h"
#include "server/server.h"

/* Longest log line in bytes, newline included. */
#define LOG_MAX_LINE 1024
/* Longest role name kept ("supervisor", "worker63"). */
#define LOG_MAX_ROLE 32

/* Set once per process by sotto__log_init(); see the header comment. */
static char log_role[LOG_MAX_ROLE] = "sotto";
static pid_t log_pid;                   /* 0 until init: use getpid() */
static int log_level = SOTTO_LOG_INFO;

void sotto__log_init(const char *role, int level)
{
    snprintf(log_role, sizeof log_role, "%s", role != NULL ? role : "sotto");
    log_pid = getpid();
    log_level = level;
}

static const char *level_name(int level)
{
    switch (level) {
    case SOTTO_LOG_ERROR: return "ERROR";
    case SOTTO_LOG_WARN: return "WARN ";
    case SOTTO_LOG_INFO: return "INFO ";
    default: return "DEBUG";
    }
}

void sotto__log(int level, uint32_t stream, const char *fmt, ...)
{
    char line[LOG_MAX_LINE];
    struct timespec ts;
    struct tm tm;
    size_t n, start;
    va_list ap;
    int k;

    if (level > log_level)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    k = snprintf(line + n, sizeof line - n, ".%03ldZ %s %s[%ld]",
                 ts.tv_nsec / 1000000L, level_name(level), log_role,
                 (long)(log_pid != 0 ? log_pid : getpid()));
    if (k > 0)
        n += (size_t)k < sizeof line - n ? (size_t)k : sizeof line - n - 1;
    if (stream != 0 && n < sizeof line - 1) {
        k = snprintf(line + n, sizeof line - n, " stream=%u", stream);
        if (k > 0)
            n += (size_t)k < sizeof line - n ? (size_t)k : sizeof line - n - 1;
    }
    if (n < sizeof line - 1) {
        k = snprintf(line + n, sizeof line - n, ": ");
        if (k > 0)
            n += (size_t)k < sizeof line - n ? (size_t)k : sizeof line - n - 1;
    }
    /* The message; one byte is kept back for the newline. */
    start = n;
    if (n < sizeof line - 1) {
        va_start(ap, fmt);
        k = vsnprintf(line + n, sizeof line - 1 - n, fmt, ap);
        va_end(ap);
        if (k > 0)
            n += (size_t)k < sizeof line - 1 - n ? (size_t)k
                                                 : sizeof line - 2 - n;
    }
    for (size_t i = start; i < n; i++) {
        unsigned char ch = (unsigned char)line[i];
        if (ch == '\n' || ch == '\r' || ch == '\t')
            line[i] = ' ';
        else if (ch < 0x20 || ch == 0x7f)
            line[i] = '?';
    }
    line[n++] = '\n';
    while (write(STDERR_FILENO, line, n) < 0 && errno == EINTR)
        ;
}

double sotto__now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
