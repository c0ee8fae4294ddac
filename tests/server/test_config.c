/*
 * test_config.c - unit tests of the supervisor's building blocks that need
 * neither a gateway nor a worker: the configuration (defaults, the INI
 * file, sotto__serve_config_set), the control channel records
 * (sotto__ctl_send/recv with an fd passed), the log line format, and the
 * crash records (in forked children that really crash).
 *
 * Files are written under a fresh directory in $TMPDIR (or /tmp) and
 * removed at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sotto.h"
#include "server/server.h"
#include "test.h"

static char tmpdir[512];

/* Writes text to tmpdir/name and returns the path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
    static char path[1024];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    if (f == NULL)
        return path;
    fputs(text, f);
    fclose(f);
    return path;
}

/* Whether s contains sub. */
static int has(const char *s, const char *sub)
{
    return s != NULL && strstr(s, sub) != NULL;
}

static void test_defaults(void)
{
    sotto__serve_config c;
    char want[512];

    setenv("XDG_STATE_HOME", "/xdg/state", 1);
    sotto__serve_config_defaults(&c);
    CHECK_STR_EQ(c.model, "tiny.en");
    CHECK_STR_EQ(c.vad_model, "");
    CHECK_INT_EQ(c.workers, 2);
    CHECK_INT_EQ(c.threads, 1);
    CHECK_STR_EQ(c.listen, "127.0.0.1");
    CHECK_INT_EQ(c.http_port, 8080);
    CHECK_INT_EQ(c.tcp_port, 43007);
    CHECK_INT_EQ(c.vosk_port, 2700);
    CHECK_INT_EQ(c.whisperlive_port, 9090);
    CHECK_INT_EQ(c.wyoming_port, 10300);
    CHECK_STR_EQ(c.state_dir, "/xdg/state/sotto");
    CHECK_INT_EQ(c.max_streams, 8);
    CHECK_INT_EQ(c.max_frame, 1 << 20);
    CHECK(c.idle_timeout == 30.0);
    CHECK(c.max_stream_seconds == 14400.0);
    CHECK(c.max_ahead == 30.0);
    CHECK_INT_EQ(c.max_outbound, 1 << 20);
    CHECK_INT_EQ(c.max_pending_audio, 4 << 20);
    CHECK_INT_EQ(c.max_upload, 25 << 20);
    CHECK(c.inference_timeout == 30.0);
    CHECK(c.heartbeat_timeout == 5.0);
    CHECK(c.restart_backoff_min == 0.1);
    CHECK(c.restart_backoff_max == 5.0);
    CHECK_INT_EQ(c.crash_loop_deaths, 5);
    CHECK(c.crash_loop_window == 30.0);
    CHECK(c.drain_timeout == 10.0);
    CHECK_INT_EQ(c.partials, 1);
    CHECK_INT_EQ(c.vad, 1);
    CHECK_STR_EQ(c.language, "");
    CHECK_INT_EQ(c.log_level, SOTTO_LOG_INFO);

    /* The state directory's fallbacks: a relative XDG path is ignored. */
    setenv("XDG_STATE_HOME", "relative", 1);
    setenv("HOME", "/home/someone", 1);
    sotto__serve_config_defaults(&c);
    CHECK_STR_EQ(c.state_dir, "/home/someone/.local/state/sotto");
    unsetenv("XDG_STATE_HOME");
    unsetenv("HOME");
    sotto__serve_config_defaults(&c);
    snprintf(want, sizeof want, "/tmp/sotto-%u", (unsigned)getuid());
    CHECK_STR_EQ(c.state_dir, want);
}

static void test_set(void)
{
    sotto__serve_config c;
    char err[512];

    sotto__serve_config_defaults(&c);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "workers", "4", err, sizeof err), 0);
    CHECK_INT_EQ(c.workers, 4);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "tcp-port", "-1", err, sizeof err), 0);
    CHECK_INT_EQ(c.tcp_port, -1);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "vosk-port", "-1", err, sizeof err), 0);
    CHECK_INT_EQ(c.vosk_port, -1);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "whisperlive-port", "0", err, sizeof err), 0);
    CHECK_INT_EQ(c.whisperlive_port, 0);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "whisperlive-port", "65536", err, sizeof err), -1);
    CHECK_INT_EQ(c.tcp_port_set, 1);
    CHECK_INT_EQ(c.wyoming_port_set, 0);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "api-key", "abc-DEF_0.9~+/=", err, sizeof err), 0);
    CHECK_STR_EQ(c.api_key, "abc-DEF_0.9~+/=");
    CHECK_INT_EQ(sotto__serve_config_set(&c, "api-key", "has space", err, sizeof err), -1);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "api-key", "semi;colon", err, sizeof err), -1);
    CHECK_STR_EQ(c.api_key, "abc-DEF_0.9~+/=");
    CHECK_INT_EQ(sotto__serve_config_set(&c, "tls-cert", "/etc/cert.pem", err, sizeof err), 0);
    CHECK_STR_EQ(c.tls_cert, "/etc/cert.pem");
    CHECK_INT_EQ(sotto__serve_config_set(&c, "http-port", "0", err, sizeof err), 0);
    CHECK_INT_EQ(c.http_port, 0);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "max-frame", "64K", err, sizeof err), 0);
    CHECK_INT_EQ(c.max_frame, 65536);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "max-pending-audio", "8M", err,
                                         sizeof err), 0);
    CHECK_INT_EQ(c.max_pending_audio, 8 << 20);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "max-outbound", "5000", err,
                                         sizeof err), 0);
    CHECK_INT_EQ(c.max_outbound, 5000);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "idle-timeout", "2.5", err,
                                         sizeof err), 0);
    CHECK(c.idle_timeout == 2.5);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "log-level", "DEBUG", err,
                                         sizeof err), 0);
    CHECK_INT_EQ(c.log_level, SOTTO_LOG_DEBUG);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "language", "de", err, sizeof err), 0);
    CHECK_STR_EQ(c.language, "de");
    CHECK_INT_EQ(sotto__serve_config_set(&c, "language", "auto", err, sizeof err), 0);
    CHECK_STR_EQ(c.language, "");
    CHECK_INT_EQ(sotto__serve_config_set(&c, "state-dir", "/var/x", err,
                                         sizeof err), 0);
    CHECK_STR_EQ(c.state_dir, "/var/x");
    CHECK_INT_EQ(sotto__serve_config_set(&c, "vad-model", "", err, sizeof err), 0);
    CHECK_STR_EQ(c.vad_model, "");

    /* Booleans, in every spelling. */
    {
        static const char *const on[] = { "1", "true", "YES", "On" };
        static const char *const off[] = { "0", "False", "no", "OFF" };
        for (int i = 0; i < 4; i++) {
            c.partials = 0;
            CHECK_INT_EQ(sotto__serve_config_set(&c, "partials", on[i], err,
                                                 sizeof err), 0);
            CHECK_INT_EQ(c.partials, 1);
            CHECK_INT_EQ(sotto__serve_config_set(&c, "vad", off[i], err,
                                                 sizeof err), 0);
            CHECK_INT_EQ(c.vad, 0);
        }
        CHECK_INT_EQ(sotto__serve_config_set(&c, "vad", "maybe", err,
                                             sizeof err), -1);
        CHECK(has(err, "vad") && has(err, "maybe"));
    }

    /* Refusals name the key and the value; the field is left alone. */
    c.workers = 3;
    CHECK_INT_EQ(sotto__serve_config_set(&c, "workers", "0", err, sizeof err), -1);
    CHECK(has(err, "workers") && has(err, "\"0\""));
    CHECK_INT_EQ(c.workers, 3);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "workers", "65", err, sizeof err), -1);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "workers", "2x", err, sizeof err), -1);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "workers", "", err, sizeof err), -1);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "http-port", "65536", err,
                                         sizeof err), -1);
    CHECK(has(err, "http-port"));
    CHECK_INT_EQ(sotto__serve_config_set(&c, "tcp-port", "-2", err, sizeof err), -1);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "max-frame", "2M", err, sizeof err), -1);
    CHECK(has(err, "max-frame"));
    CHECK_INT_EQ(sotto__serve_config_set(&c, "max-frame", "-5", err, sizeof err), -1);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "max-frame", "1T", err, sizeof err), -1);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "idle-timeout", "nan", err,
                                         sizeof err), -1);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "idle-timeout", "inf", err,
                                         sizeof err), -1);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "max-stream-seconds", "14401", err,
                                         sizeof err), -1);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "log-level", "loud", err,
                                         sizeof err), -1);
    CHECK(has(err, "log-level"));
    CHECK_INT_EQ(sotto__serve_config_set(&c, "language", "EN", err, sizeof err), -1);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "language", "english", err,
                                         sizeof err), -1);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "model", "", err, sizeof err), -1);
    CHECK_INT_EQ(sotto__serve_config_set(&c, "no-such-key", "1", err,
                                         sizeof err), -1);
    CHECK(has(err, "unknown option") && has(err, "no-such-key"));
    /* INI-style underscores are not keys. */
    CHECK_INT_EQ(sotto__serve_config_set(&c, "max_streams", "1", err,
                                         sizeof err), -1);
    {
        char longv[SOTTO__SERVE_MAX_PATH + 10];
        memset(longv, 'a', sizeof longv - 1);
        longv[sizeof longv - 1] = '\0';
        CHECK_INT_EQ(sotto__serve_config_set(&c, "model", longv, err,
                                             sizeof err), -1);
        CHECK(has(err, "model") && has(err, "limit"));
        CHECK_INT_EQ(sotto__serve_config_set(&c, "listen", longv, err,
                                             sizeof err), -1);
    }
    /* A tiny error buffer is not overrun. */
    {
        char small[8];
        memset(small, 'x', sizeof small);
        CHECK_INT_EQ(sotto__serve_config_set(&c, "workers", "0", small,
                                             sizeof small), -1);
        CHECK(memchr(small, '\0', sizeof small) != NULL);
        CHECK_INT_EQ(sotto__serve_config_set(&c, "workers", "0", NULL, 0), -1);
    }
}

static void test_load(void)
{
    sotto__serve_config c;
    char err[1024];
    const char *p;

    sotto__serve_config_defaults(&c);
    p = write_file("good.ini",
                   "; sotto serve settings\n"
                   "# another comment\n"
                   "[serve]\n"
                   "workers = 3\n"
                   "model=/models/base.en\n"
                   "http-port = 0   ; inline comment\n"
                   "tcp-port = -1\n"
                   "partials = off\n"
                   "vad = yes\n"
                   "max-frame = 256K\n"
                   "restart-backoff-min = 0.05\n"
                   "log-level = warn\n"
                   "\n");
    CHECK_INT_EQ(sotto__serve_config_load(&c, p, err, sizeof err), 0);
    CHECK_INT_EQ(c.workers, 3);
    CHECK_STR_EQ(c.model, "/models/base.en");
    CHECK_INT_EQ(c.http_port, 0);
    CHECK_INT_EQ(c.tcp_port, -1);
    CHECK_INT_EQ(c.partials, 0);
    CHECK_INT_EQ(c.vad, 1);
    CHECK_INT_EQ(c.max_frame, 256 * 1024);
    CHECK(c.restart_backoff_min == 0.05);
    CHECK_INT_EQ(c.log_level, SOTTO_LOG_WARN);
    /* Untouched keys keep their defaults. */
    CHECK_INT_EQ(c.max_streams, 8);

    /* Flags come after the file and override it. */
    CHECK_INT_EQ(sotto__serve_config_set(&c, "workers", "5", err, sizeof err), 0);
    CHECK_INT_EQ(c.workers, 5);

    /* An unknown key: the message names the file, the line and the key. */
    p = write_file("badkey.ini", "[serve]\nworkers = 2\n\nwrokers = 3\n");
    CHECK_INT_EQ(sotto__serve_config_load(&c, p, err, sizeof err), -1);
    CHECK(has(err, "badkey.ini:4:") && has(err, "wrokers"));

    /* A bad value. */
    p = write_file("badval.ini", "[serve]\nmax-streams = lots\n");
    CHECK_INT_EQ(sotto__serve_config_load(&c, p, err, sizeof err), -1);
    CHECK(has(err, "badval.ini:2:") && has(err, "max-streams") &&
          has(err, "lots"));

    /* Out of range. */
    p = write_file("range.ini", "[serve]\n\n\ncrash-loop-window = 0\n");
    CHECK_INT_EQ(sotto__serve_config_load(&c, p, err, sizeof err), -1);
    CHECK(has(err, "range.ini:4:") && has(err, "crash-loop-window"));

    /* Syntax errors, and the first error wins. */
    p = write_file("syntax.ini", "[serve]\nworkers 3\nbogus = 1\n");
    CHECK_INT_EQ(sotto__serve_config_load(&c, p, err, sizeof err), -1);
    CHECK(has(err, "syntax.ini:2:") && has(err, "syntax"));
    p = write_file("order.ini", "[serve]\nbogus = 1\nworkers 3\n");
    CHECK_INT_EQ(sotto__serve_config_load(&c, p, err, sizeof err), -1);
    CHECK(has(err, "order.ini:2:") && has(err, "bogus"));

    /* Keys outside [serve]. */
    p = write_file("nosection.ini", "workers = 2\n");
    CHECK_INT_EQ(sotto__serve_config_load(&c, p, err, sizeof err), -1);
    CHECK(has(err, "nosection.ini:1:") && has(err, "[serve]"));
    p = write_file("othersection.ini", "[serve]\nworkers = 2\n[server]\nvad = 1\n");
    CHECK_INT_EQ(sotto__serve_config_load(&c, p, err, sizeof err), -1);
    CHECK(has(err, "othersection.ini:4:") && has(err, "[server]"));

    /* A line longer than libinih's buffer is refused, not cut. */
    {
        char text[2048];
        int n = snprintf(text, sizeof text, "[serve]\nmodel = /");
        memset(text + n, 'm', 1500);
        snprintf(text + n + 1500, sizeof text - (size_t)n - 1500, "\n");
        p = write_file("long.ini", text);
        CHECK_INT_EQ(sotto__serve_config_load(&c, p, err, sizeof err), -1);
        CHECK(has(err, "long.ini:2:") && has(err, "limit"));
    }

    /* A missing file. */
    snprintf(err, sizeof err, "?");
    CHECK_INT_EQ(sotto__serve_config_load(&c, "/nonexistent/sotto.ini", err,
                                          sizeof err), -1);
    CHECK(has(err, "/nonexistent/sotto.ini"));
}

/* ---- control records --------------------------------------------------- */

static int is_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFD);
    return fl >= 0 && (fl & FD_CLOEXEC);
}

static void test_ctl(void)
{
    int sv[2], pp[2], fd = -1;
    sotto__ctl_msg m, r;
    char buf[16];

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0 ||
        pipe(pp) != 0) {
        CHECK(!"socketpair/pipe");
        return;
    }
    fcntl(pp[0], F_SETFL, O_NONBLOCK);

    /* WORKER_UP with the write end of a pipe. */
    memset(&m, 0, sizeof m);
    m.type = SOTTO__CTL_WORKER_UP;
    m.slot = 1;
    m.pid = 4242;
    m.generation = 7;
    CHECK_INT_EQ(sotto__ctl_send(sv[0], &m, pp[1]), 0);
    memset(&r, 0x55, sizeof r);
    CHECK_INT_EQ(sotto__ctl_recv(sv[1], &r, &fd), 1);
    CHECK_INT_EQ(r.type, SOTTO__CTL_WORKER_UP);
    CHECK_INT_EQ(r.slot, 1);
    CHECK_INT_EQ(r.pid, 4242);
    CHECK_INT_EQ(r.generation, 7);
    CHECK(fd >= 0 && fd != pp[1]);
    CHECK(is_cloexec(fd));
    /* The fd is the same pipe: what goes in through it comes out of pp[0]. */
    CHECK_INT_EQ(write(fd, "hi", 2), 2);
    CHECK_INT_EQ(read(pp[0], buf, sizeof buf), 2);
    CHECK(memcmp(buf, "hi", 2) == 0);
    close(fd);
    fd = -1;

    /* A record without an fd. */
    memset(&m, 0, sizeof m);
    m.type = SOTTO__CTL_LISTENING;
    m.http_port = 8080;
    m.tcp_port = -1;
    m.vosk_port = 2700;
    m.whisperlive_port = -1;
    m.wyoming_port = 10300;
    CHECK_INT_EQ(sotto__ctl_send(sv[1], &m, -1), 0);
    CHECK_INT_EQ(sotto__ctl_recv(sv[0], &r, &fd), 1);
    CHECK_INT_EQ(r.type, SOTTO__CTL_LISTENING);
    CHECK_INT_EQ(r.http_port, 8080);
    CHECK_INT_EQ(r.tcp_port, -1);
    CHECK_INT_EQ(r.vosk_port, 2700);
    CHECK_INT_EQ(r.whisperlive_port, -1);
    CHECK_INT_EQ(r.wyoming_port, 10300);
    CHECK_INT_EQ(fd, -1);

    /* STATE with a reason. */
    memset(&m, 0, sizeof m);
    m.type = SOTTO__CTL_STATE;
    snprintf(m.reason, sizeof m.reason, "crash_loop");
    CHECK_INT_EQ(sotto__ctl_send(sv[0], &m, -1), 0);
    CHECK_INT_EQ(sotto__ctl_recv(sv[1], &r, &fd), 1);
    CHECK_STR_EQ(r.reason, "crash_loop");

    /* Malformed: the wrong size, even with the fd attached (which must
     * be closed, not leaked). */
    CHECK_INT_EQ(send(sv[0], "short", 5, 0), 5);
    CHECK_INT_EQ(sotto__ctl_recv(sv[1], &r, &fd), -2);
    CHECK_INT_EQ(fd, -1);
    {
        unsigned char big[sizeof(sotto__ctl_msg) + 8];
        memset(big, 0, sizeof big);
        CHECK_INT_EQ(send(sv[0], big, sizeof big, 0), (long long)sizeof big);
        CHECK_INT_EQ(sotto__ctl_recv(sv[1], &r, &fd), -2);
    }
    /* Malformed: an unknown type; a reason without its NUL. */
    memset(&m, 0, sizeof m);
    m.type = 99;
    CHECK_INT_EQ(sotto__ctl_send(sv[0], &m, -1), 0);
    CHECK_INT_EQ(sotto__ctl_recv(sv[1], &r, &fd), -2);
    m.type = SOTTO__CTL_KILL_WORKER;
    memset(m.reason, 'x', sizeof m.reason);
    CHECK_INT_EQ(sotto__ctl_send(sv[0], &m, -1), 0);
    CHECK_INT_EQ(sotto__ctl_recv(sv[1], &r, &fd), -2);
    /* Malformed: an fd on a record that carries none, and WORKER_UP
     * without its fd. */
    memset(&m, 0, sizeof m);
    m.type = SOTTO__CTL_DRAIN;
    CHECK_INT_EQ(sotto__ctl_send(sv[0], &m, pp[1]), 0);
    m.type = SOTTO__CTL_WORKER_UP;
    CHECK_INT_EQ(sotto__ctl_send(sv[0], &m, -1), 0);
    CHECK_INT_EQ(sotto__ctl_recv(sv[1], &r, &fd), -2);
    CHECK_INT_EQ(fd, -1);
    CHECK_INT_EQ(sotto__ctl_recv(sv[1], &r, &fd), -2);
    /* Every copy of the write end that crossed the socket was closed:
     * once ours goes, the pipe reads EOF instead of EAGAIN. */
    close(pp[1]);
    CHECK_INT_EQ(read(pp[0], buf, sizeof buf), 0);

    /* EOF. */
    close(sv[0]);
    CHECK_INT_EQ(sotto__ctl_recv(sv[1], &r, &fd), 0);
    /* Sending to a closed peer fails with EPIPE, without SIGPIPE. */
    CHECK_INT_EQ(sotto__ctl_send(sv[1], &m, -1), -1);
    CHECK_INT_EQ(errno, EPIPE);
    close(sv[1]);
    close(pp[0]);
}

/* ---- log lines ---------------------------------------------------------- */

/* Runs fn with stderr sent to a file; returns what it wrote (malloc'd). */
static char *capture_stderr(void (*fn)(void))
{
    char path[600];
    int fd, saved;
    size_t len = 0;
    char *text;

    snprintf(path, sizeof path, "%s/stderr.txt", tmpdir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return NULL;
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    text = test_read_file(path, &len);
    return text;
}

static void log_some(void)
{
    char big[2000];

    sotto__log_init("tester", SOTTO_LOG_INFO);
    sotto__log(SOTTO_LOG_INFO, 17, "hello %d", 42);
    sotto__log(SOTTO_LOG_WARN, 0, "no stream");
    sotto__log(SOTTO_LOG_DEBUG, 0, "dropped");
    sotto__log(SOTTO_LOG_ERROR, 0, "two\nlines\x01");
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    sotto__log(SOTTO_LOG_ERROR, 0, "%s", big);
}

static void test_log(void)
{
    char *text = capture_stderr(log_some);
    char want[64];
    char *line, *save = NULL;
    int n = 0;

    CHECK(text != NULL);
    if (text == NULL)
        return;
    snprintf(want, sizeof want, " INFO  tester[%d] stream=17: hello 42",
             (int)getpid());
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save), n++) {
        /* 2026-11-28T03:50:00.123Z */
        CHECK(strlen(line) > 24 && line[4] == '-' && line[10] == 'T' &&
              line[19] == '.' && line[23] == 'Z' && line[24] == ' ');
        if (n == 0)
            CHECK_STR_EQ(line + 24, want);
        if (n == 1)
            CHECK(has(line, " WARN  tester[") && has(line, "]: no stream"));
        if (n == 2)
            CHECK(has(line, " ERROR tester[") && has(line, ": two lines?"));
        if (n == 3) {
            CHECK(has(line, " ERROR tester["));
            /* Cut to 1024 bytes with the newline. */
            CHECK(strlen(line) <= 1023 && strlen(line) > 1000);
        }
    }
    CHECK_INT_EQ(n, 4);
    CHECK(!has(text, "dropped"));
    free(text);
    CHECK(sotto__now() > 0.0);
}

/* ---- crash records ------------------------------------------------------ */

static volatile int sink;
/* Deeper than any stack; volatile so the compiler sees an end. */
static volatile int max_depth = 1 << 30;
/* The address the segfault test writes to. */
static volatile uintptr_t bad_address = 16;

__attribute__((noinline)) static int recurse(int depth)
{
    volatile char pad[4096];
    pad[0] = (char)depth;
    sink = pad[0];
    if (depth >= max_depth)
        return 0;
    return recurse(depth + 1) + pad[1];
}

/* Forks a child that installs the crash handler in dir and dies in the
 * way mode says; returns its wait status. */
static int crash_child(const char *dir, int mode)
{
    pid_t pid = fork();
    int st = 0;

    if (pid == 0) {
        uint32_t ids[2] = { 17, 42 };
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, STDERR_FILENO);
        sotto__crash_install(dir, "worker3");
        sotto__crash_set_streams(ids, 2);
        if (mode == 0)
            *(volatile int *)bad_address = 1;    /* SIGSEGV at 0x10 */
        else if (mode == 1)
            abort();
        else
            recurse(0);                          /* stack overflow */
        _exit(0);
    }
    waitpid(pid, &st, 0);
    return st;
}

/* Reads the one crash file in dir (malloc'd), or NULL. */
static char *read_crash_file(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[1024];
    char *text = NULL;
    size_t len;
    int found = 0;

    if (d == NULL)
        return NULL;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "crash-worker3-", 14) == 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            found++;
        }
    }
    closedir(d);
    if (found == 1)
        text = test_read_file(path, &len);
    return text;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[1024];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void test_crash(void)
{
    char dir[600];
    char *text;
    int st;

    /* A segfault: the record names everything, and the child still dies
     * of SIGSEGV.  The directory is made on install (mkdir -p). */
    snprintf(dir, sizeof dir, "%s/state/a/b", tmpdir);
    st = crash_child(dir, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    text = read_crash_file(dir);
    CHECK(text != NULL);
    CHECK(has(text, "role=worker3"));
    CHECK(has(text, "signal=11 (SIGSEGV)"));
    CHECK(has(text, "code=1"));   /* SEGV_MAPERR */
    CHECK(has(text, "fault address=0x0000000000000010"));
    CHECK(has(text, "streams in flight: 17 42"));
    CHECK(has(text, "backtrace:\n"));
    CHECK(has(text, "crash_child") || has(text, "test_config"));
    free(text);
    remove_dir(dir);

    st = crash_child(dir, 1);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    text = read_crash_file(dir);
    CHECK(has(text, "signal=6 (SIGABRT)"));
    free(text);
    remove_dir(dir);

#if !defined(__SANITIZE_ADDRESS__)
    /* A stack overflow is recorded too, thanks to the alternate stack. */
    st = crash_child(dir, 2);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    text = read_crash_file(dir);
    CHECK(has(text, "signal=11 (SIGSEGV)"));
    free(text);
    remove_dir(dir);
#endif
    snprintf(dir, sizeof dir, "%s/state/a", tmpdir);
    rmdir(dir);
    snprintf(dir, sizeof dir, "%s/state", tmpdir);
    rmdir(dir);
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;

    snprintf(tmpdir, sizeof tmpdir, "%s/sotto-test-config-XXXXXX",
             t && *t ? t : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_defaults();
    if (home != NULL)
        setenv("HOME", home, 1);
    free(home);
    test_set();
    test_load();
    test_ctl();
    test_log();
    test_crash();
    remove_dir(tmpdir);
    return test_main_exit("test_config");
}
