/*
 * crash.c - crash records: what a process of `sotto serve` was doing when
 * it died of SIGSEGV, SIGBUS, SIGILL, SIGFPE or SIGABRT; and, written by
 * the gateway for a worker (sotto__crash_record_death), what it held when
 * it died of a signal no handler sees (SIGKILL) or exited with a failure.
 *
 * sotto__crash_install() does everything that is not async-signal-safe
 * ahead of time: it creates the state directory (mkdir -p), fixes the
 * crash file's name (crash-<role>-<pid>-<UTC time>.txt), allocates an
 * alternate signal stack, and calls backtrace() once so that glibc loads
 * libgcc's unwinder now rather than inside the handler.  The handler then
 * only uses async-signal-safe calls - open() with the precomputed path,
 * write(), close(), sigaction(), raise() - plus backtrace() and
 * backtrace_symbols_fd(), which glibc documents as usable there once
 * libgcc is loaded (the latter does not allocate).  Numbers are formatted
 * by hand.
 *
 * The record goes to stderr and to the crash file:
 *
 *   sotto crash: role=worker0 pid=1234 signal=11 (SIGSEGV) code=1
 *   sotto crash: fault address=0x0000000000000010
 *   sotto crash: streams in flight: 17 18
 *   sotto crash: backtrace:
 *   ./build/sotto(+0x1234)[0x5555...]
 *   ...
 *
 * Then the handler restores the default action and re-raises the signal,
 * so the parent's waitpid() sees the real cause of death.  The handler
 * runs on the alternate stack, so a stack overflow is recorded too; the
 * alternate stack belongs to the thread that called install (POSIX
 * alternate stacks are per thread), which is the thread that runs the
 * process body.  If two threads crash at once, only the first writes a
 * record.
 *
 * State (file-static, written only by install and by
 * sotto__crash_set_streams, read by the handler): the crash file path and
 * role, fixed at install time; the streams in flight, as lock-free atomics
 * so the handler reads a consistent-enough list without locks; the
 * alternate stack, allocated once per process; and a flag that lets only
 * one thread write a record.
 */
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sotto.h"
#include "server/server.h"

/* Streams recorded as in flight (the header's "up to 8 ids"). */
#define CRASH_MAX_STREAMS 8
/* Frames of backtrace written. */
#define CRASH_MAX_FRAMES 64
/* The alternate signal stack: room for backtrace_symbols_fd and the
 * unwinder, well above MINSIGSTKSZ. */
#define CRASH_ALTSTACK_SIZE (256 * 1024)
/* Longest role name kept in a record. */
#define CRASH_MAX_ROLE 32

/* Fixed at install time; see the header comment. */
static char crash_path[SOTTO__SERVE_MAX_PATH + 128];
static char crash_role[CRASH_MAX_ROLE];
static void *crash_altstack;                /* allocated once per process */
/* Updated by sotto__crash_set_streams(), read by the handler. */
static _Atomic uint32_t crash_streams[CRASH_MAX_STREAMS];
static atomic_int crash_nstreams;
/* Set by the first thread that enters the handler. */
static atomic_int crash_entered;

static const int crash_signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };

/* mkdir -p path, mode for new components. */
static int make_dirs(const char *path, mode_t mode)
{
    char tmp[SOTTO__SERVE_MAX_PATH];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, mode) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(tmp, mode) != 0 && errno != EEXIST ? -1 : 0;
}

/* ---- async-signal-safe output ------------------------------------------ */

/* Writes all of s[0..n) to fd, giving up on any error. */
static void put(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, s, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        s += k;
        n -= (size_t)k;
    }
}

static void put_str(int fd, const char *s)
{
    put(fd, s, strlen(s));
}

/* Writes v in decimal. */
static void put_dec(int fd, long long v)
{
    char buf[24];
    size_t i = sizeof buf;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v
                                 : (unsigned long long)v;

    do {
        buf[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        buf[--i] = '-';
    put(fd, buf + i, sizeof buf - i);
}

/* Writes v as 0x followed by 16 hex digits. */
static void put_hex(int fd, unsigned long long v)
{
    char buf[18];

    buf[0] = '0';
    buf[1] = 'x';
    for (int i = 17; i >= 2; i--) {
        buf[i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    }
    put(fd, buf, sizeof buf);
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGILL: return "SIGILL";
    case SIGFPE: return "SIGFPE";
    case SIGABRT: return "SIGABRT";
    /* The deaths the gateway records for a worker. */
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGQUIT: return "SIGQUIT";
    case SIGHUP: return "SIGHUP";
    case SIGPIPE: return "SIGPIPE";
    case SIGXCPU: return "SIGXCPU";
    case SIGXFSZ: return "SIGXFSZ";
    case SIGSYS: return "SIGSYS";
    default: return "?";
    }
}

/* Writes the record (without the backtrace frames) to fd. */
static void put_record(int fd, int sig, const siginfo_t *si)
{
    int n = atomic_load_explicit(&crash_nstreams, memory_order_relaxed);

    put_str(fd, "sotto crash: role=");
    put_str(fd, crash_role);
    put_str(fd, " pid=");
    put_dec(fd, (long long)getpid());
    put_str(fd, " signal=");
    put_dec(fd, sig);
    put_str(fd, " (");
    put_str(fd, signal_name(sig));
    put_str(fd, ") code=");
    put_dec(fd, si != NULL ? si->si_code : 0);
    put_str(fd, "\nsotto crash: fault address=");
    put_hex(fd, si != NULL && sig != SIGABRT
                    ? (unsigned long long)(uintptr_t)si->si_addr : 0ull);
    put_str(fd, "\nsotto crash: streams in flight:");
    if (n <= 0)
        put_str(fd, " none");
    for (int i = 0; i < n && i < CRASH_MAX_STREAMS; i++) {
        put_str(fd, " ");
        put_dec(fd, atomic_load_explicit(&crash_streams[i],
                                         memory_order_relaxed));
    }
    put_str(fd, "\nsotto crash: backtrace:\n");
}

static void crash_handler(int sig, siginfo_t *si, void *uctx)
{
    int saved_errno = errno;
    struct sigaction dfl;

    (void)uctx;
    if (atomic_exchange(&crash_entered, 1) == 0) {
        void *frames[CRASH_MAX_FRAMES];
        int nframes = backtrace(frames, CRASH_MAX_FRAMES);
        int fd = crash_path[0] != '\0'
                     ? open(crash_path, O_WRONLY | O_CREAT | O_APPEND |
                            O_CLOEXEC | O_NOFOLLOW, 0600)
                     : -1;

        put_record(STDERR_FILENO, sig, si);
        backtrace_symbols_fd(frames, nframes, STDERR_FILENO);
        if (fd >= 0) {
            put_record(fd, sig, si);
            backtrace_symbols_fd(frames, nframes, fd);
            close(fd);
        }
    }
    /* Default action, then the same signal again: for a fault the
     * faulting instruction runs again on return; a raised or sent signal
     * is pending until the handler returns.  Either way the process dies
     * of sig, as its parent must see. */
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig);
    errno = saved_errno;
}

void sotto__crash_install(const char *state_dir, const char *role)
{
    struct sigaction sa;
    stack_t ss;
    void *probe[2];
    struct tm tm;
    char stamp[32];
    time_t now = time(NULL);

    snprintf(crash_role, sizeof crash_role, "%s", role != NULL ? role : "?");
    crash_path[0] = '\0';
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    if (state_dir != NULL && state_dir[0] != '\0' &&
        make_dirs(state_dir, 0700) == 0) {
        int n = snprintf(crash_path, sizeof crash_path,
                         "%s/crash-%s-%ld-%s.txt", state_dir, crash_role,
                         (long)getpid(), stamp);
        if (n < 0 || (size_t)n >= sizeof crash_path)
            crash_path[0] = '\0';   /* no file; stderr still gets it */
    }

    /* Load libgcc's unwinder now: the first backtrace() dlopens it. */
    (void)backtrace(probe, 2);

    if (crash_altstack == NULL)
        crash_altstack = malloc(CRASH_ALTSTACK_SIZE);
    if (crash_altstack != NULL) {
        memset(&ss, 0, sizeof ss);
        ss.ss_sp = crash_altstack;
        ss.ss_size = CRASH_ALTSTACK_SIZE;
        sigaltstack(&ss, NULL);
    }

    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = crash_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    /* While one crash signal is handled, the others wait. */
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++)
        sigaddset(&sa.sa_mask, crash_signals[i]);
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++)
        sigaction(crash_signals[i], &sa, NULL);
}

int sotto__crash_signal_recorded(int sig)
{
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++)
        if (crash_signals[i] == sig)
            return 1;
    return 0;
}

int sotto__crash_record_death(const char *state_dir, const char *role, int pid,
                              int exit_status, int sig, const char *detail,
                              const uint32_t *streams, int n_streams,
                              uint32_t busy)
{
    char path[SOTTO__SERVE_MAX_PATH + 128], stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    FILE *f = NULL;
    int n, fd = -1;

    if (state_dir == NULL || state_dir[0] == '\0') {
        errno = ENOENT;
        return -1;
    }
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    n = snprintf(path, sizeof path, "%s/crash-%s-%d-%s.txt", state_dir, role, pid, stamp);
    if (n < 0 || (size_t)n >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (make_dirs(state_dir, 0700) != 0 ||
        (fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
                   0600)) < 0 ||
        (f = fdopen(fd, "a")) == NULL)
        goto fail;
    fd = -1;
    if (sig > 0)
        fprintf(f, "sotto crash: role=%s pid=%d signal=%d (%s)\n", role, pid, sig,
                signal_name(sig));
    else
        fprintf(f, "sotto crash: role=%s pid=%d exit status=%d\n", role, pid,
                exit_status);
    fprintf(f, "sotto crash: recorded by the gateway: %s\n",
            detail != NULL && detail[0] != '\0' ? detail : "?");
    fprintf(f, "sotto crash: streams in flight:");
    if (n_streams <= 0)
        fprintf(f, " none");
    for (int i = 0; i < n_streams; i++)
        fprintf(f, " %u%s", streams[i], streams[i] == busy ? " (in inference)" : "");
    fprintf(f, "\nsotto crash: backtrace: none (%s)\n",
            sig == SIGKILL ? "SIGKILL cannot be caught"
            : sig > 0      ? "the signal has no crash handler"
                           : "the process exited by itself");
    if (fclose(f) != 0) {
        f = NULL;
        goto fail;
    }
    sotto__log(SOTTO_LOG_WARN, busy, "crash record of %s (pid %d): %s", role, pid, path);
    return 0;
fail:
    n = errno;
    if (f != NULL)
        fclose(f);
    if (fd >= 0)
        close(fd);
    sotto__log(SOTTO_LOG_WARN, 0, "no crash record of %s (pid %d): %s: %s", role, pid,
               path, strerror(n));
    errno = n;
    return -1;
}

void sotto__crash_set_streams(const uint32_t *ids, int n)
{
    if (n < 0 || ids == NULL)
        n = 0;
    if (n > CRASH_MAX_STREAMS)
        n = CRASH_MAX_STREAMS;
    /* Shrink the count first, so the handler never reads an id slot that
     * is being rewritten past the old count. */
    atomic_store_explicit(&crash_nstreams, 0, memory_order_relaxed);
    for (int i = 0; i < n; i++)
        atomic_store_explicit(&crash_streams[i], ids[i], memory_order_relaxed);
    atomic_store_explicit(&crash_nstreams, n, memory_order_release);
}
