/*
 * supervisor.c - the root process of `sotto serve`: it forks the gateway
 * and the workers, reaps them, restarts them, and drives shutdown.
 *
 * It is a small state machine in the style of s6 and nginx's master: one
 * poll() loop that wakes for a signal (through a self-pipe), for a record
 * on the gateway's control socket, or for a timer (a restart that is due,
 * a deadline), and acts on what it finds.  The supervisor never loads the
 * model, never touches a client and never calls libwebsockets, so the
 * only ways it can fail are the system calls it makes.
 *
 * Processes.  Children are forked, not exec'd: each runs
 * sotto__gateway_main() or sotto__worker_main() and _exits with its return
 * value.  Right after fork a child asks for SIGKILL when the supervisor
 * dies (PR_SET_PDEATHSIG), checks that its parent has not already died,
 * moves into its own process group (so a terminal's ^C reaches only the
 * supervisor, which turns it into a drain), takes the name
 * "sotto-<role>" (as ps shows it), resets every signal to its default and
 * unblocks them, closes every fd but stdio and the two it
 * needs, and starts its log and crash records under its role ("gateway",
 * "worker0", ...).  Each child keeps the read end of the life pipe, whose
 * write end only the supervisor holds: EOF there means the supervisor is
 * gone.
 *
 * Start.  The gateway first, with one end of a SOCK_SEQPACKET control
 * socketpair.  When it reports SOTTO__CTL_LISTENING, the supervisor logs
 * "listening http=P tcp=Q" (tests read the ports from that line) and pins
 * ephemeral ports in its copy of the configuration, so that a restarted
 * gateway binds the same ones.  Then each worker: a SOCK_STREAM socketpair,
 * fork, and the gateway end goes to the gateway with SOTTO__CTL_WORKER_UP.
 *
 * Deaths.  SIGCHLD wakes the loop, which reaps with waitpid(WNOHANG) until
 * none is left, logs each death, and tells the gateway of each worker's
 * (SOTTO__CTL_WORKER_DOWN).  Restart policy, per process:
 *   - exit SOTTO__EXIT_FATAL: never respawned (its configuration is
 *     wrong).  When no worker slot can run any more, the gateway gets
 *     SOTTO__CTL_STATE "fatal: ..."; a fatal gateway stops the server
 *     (exit 1).
 *   - any other death is respawned after a backoff that starts at
 *     restart_backoff_min and doubles (up to restart_backoff_max) for each
 *     death of a child that ran less than min(10 x its backoff, 10 s);
 *     a longer run resets it.
 *   - crash-loop breaker: more than crash_loop_deaths worker deaths within
 *     crash_loop_window seconds stop all worker restarts (ERROR logged,
 *     SOTTO__CTL_STATE "crash_loop" to the gateway, no busy loop).  The
 *     gateway has its own breaker with the same numbers; tripping it stops
 *     the server (exit 1).
 *   - the gateway's death takes the workers with it (SIGKILL; their
 *     clients were on the gateway's sockets), without counting as their
 *     deaths; they are spawned again when the new gateway is LISTENING.
 *   - the watchdog lives in the gateway: SOTTO__CTL_KILL_WORKER makes the
 *     supervisor SIGKILL that worker if it is still the slot's pid.  That
 *     death counts.
 *   - a gateway that does not report LISTENING within SUP_LISTEN_TIMEOUT,
 *     that sends a malformed record, whose control socket cannot be
 *     written to, or that closes it and does not exit within
 *     SUP_TERM_GRACE, is SIGKILLed and so restarted.
 *
 * Shutdown has two speeds.  The first SIGTERM or SIGINT starts a drain:
 * SOTTO__CTL_DRAIN to the gateway, which finishes its streams and exits 0;
 * then the workers get SIGTERM, and SIGKILL SUP_TERM_GRACE seconds later
 * if still there; the result is 0 (1 if the gateway did not exit 0).  A
 * drain that takes longer than drain_timeout + SUP_DRAIN_SLACK, or a second
 * signal, SIGKILLs every child at once; the result is then 1.  Either way
 * every child is reaped (waitpid until ECHILD) before returning, and no
 * file is left behind.
 *
 * State: everything lives in a struct sup on the stack of
 * sotto__supervisor_run(); the only mutable file-static state is what the
 * signal handlers touch (the self-pipe's write end, the SIGTERM/SIGINT
 * count and the last such signal).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sotto.h"
#include "server/server.h"

/* Leak checks for the children: a sanitized build has LeakSanitizer, which
 * checks at exit(), but a child ends with _exit() (see child_exit). */
#if defined(__SANITIZE_ADDRESS__)
#define SOTTO_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define SOTTO_LSAN 1
#endif
#endif
#ifdef SOTTO_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Seconds between SIGTERM and SIGKILL when stopping children. */
#define SUP_TERM_GRACE 2.0
/* Seconds a drain may take beyond drain_timeout before SIGKILL. */
#define SUP_DRAIN_SLACK 2.0
/* Seconds a new gateway has to report LISTENING. */
#define SUP_LISTEN_TIMEOUT 30.0
/* A child that ran this long (or 10 x its backoff, if less) resets its
 * backoff when it dies. */
#define SUP_STABLE_RUN 10.0
#define SUP_STABLE_FACTOR 10.0
/* Control records handled per wakeup, so that a chatty gateway cannot
 * starve signal handling. */
#define SUP_CTL_BATCH 64

/* ---- signal state: the only mutable statics ---------------------------- */

/* Write end of the self-pipe; -1 outside sotto__supervisor_run(). */
static int sup_sigpipe_w = -1;
/* SIGTERM/SIGINT received so far, and the last of them. */
static volatile sig_atomic_t sup_stop_signals;
static volatile sig_atomic_t sup_last_signal;

static void sup_on_signal(int sig)
{
    int saved = errno;
    char b = (char)sig;

    if (sig == SIGTERM || sig == SIGINT) {
        sup_stop_signals++;
        sup_last_signal = sig;
    }
    if (sup_sigpipe_w >= 0)
        (void)!write(sup_sigpipe_w, &b, 1);   /* full pipe: already woken */
    errno = saved;
}

/* ---- state ------------------------------------------------------------- */

typedef struct child {
    pid_t pid;              /* 0: not running */
    int generation;         /* spawns so far */
    double started;         /* sotto__now() at spawn */
    double backoff;         /* last restart delay; 0 = none yet */
    double restart_at;      /* > 0: respawn when due */
    int killed;             /* stopped by the supervisor: not a crash */
    int fatal;              /* exited SOTTO__EXIT_FATAL: never respawn */
} child;

/* The times of the last cap deaths, for the crash-loop breaker. */
typedef struct death_log {
    double *t;
    int cap, n, head;
} death_log;

enum sup_state {
    SUP_RUNNING,            /* normal operation */
    SUP_DRAINING,           /* DRAIN sent; waiting for the gateway */
    SUP_STOPPING,           /* SIGTERM sent; SIGKILL at term_deadline */
    SUP_KILLING             /* SIGKILL sent to everything */
};

typedef struct sup {
    sotto__serve_config cfg;    /* own copy: ports are pinned once bound */
    pid_t self;
    int sig_r;                  /* self-pipe read end */
    int life_r, life_w;         /* the life pipe */
    int ctl;                    /* our end of the gateway's control socket */
    child gw;
    int gw_listening;
    double gw_deadline;         /* > 0: kill the gateway if still there */
    child w[SOTTO__SERVE_MAX_WORKERS];
    death_log gw_deaths, w_deaths;
    int workers_stopped;        /* the worker crash-loop breaker tripped */
    enum sup_state state;
    int stop_signals_seen;
    double drain_deadline;
    double term_deadline;
    int exit_code;
} sup;

/* ---- small helpers ------------------------------------------------------ */

static int death_log_init(death_log *d, int cap)
{
    d->t = calloc((size_t)cap, sizeof *d->t);
    d->cap = cap;
    d->n = d->head = 0;
    return d->t != NULL ? 0 : -1;
}

/* Records a death at now; returns whether the log now holds cap deaths
 * within window seconds. */
static int death_log_add(death_log *d, double now, double window)
{
    d->t[d->head] = now;
    d->head = (d->head + 1) % d->cap;
    if (d->n < d->cap)
        d->n++;
    /* When full, head is the oldest entry. */
    return d->n == d->cap && now - d->t[d->head % d->cap] <= window;
}

static void describe_status(int st, char *buf, size_t cap)
{
    if (WIFEXITED(st)) {
        snprintf(buf, cap, "exited with status %d%s", WEXITSTATUS(st),
                 WEXITSTATUS(st) == SOTTO__EXIT_FATAL
                     ? " (fatal: configuration error)"
                 : WEXITSTATUS(st) == SOTTO__EXIT_NOMEM ? " (out of memory)" : "");
    } else if (WIFSIGNALED(st)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(st));
        snprintf(buf, cap, "was killed by signal %d (SIG%s)%s", WTERMSIG(st),
                 abbrev != NULL ? abbrev : "?",
                 WCOREDUMP(st) ? ", core dumped" : "");
    } else {
        snprintf(buf, cap, "changed state 0x%x", (unsigned)st);
    }
}

static int live_children(const sup *s)
{
    int n = s->gw.pid > 0;

    for (int i = 0; i < s->cfg.workers; i++)
        n += s->w[i].pid > 0;
    return n;
}

static void kill_child(child *ch, int sig)
{
    if (ch->pid > 0) {
        kill(ch->pid, sig);
        ch->killed = 1;
    }
}

/* Closes fds [lo, hi]. */
static void close_span(unsigned lo, unsigned hi)
{
    struct rlimit rl;

    if (lo > hi)
        return;
    if (close_range(lo, hi, 0) == 0)
        return;
    /* Kernels before 5.9: close them one by one, up to the fd limit. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur - 1 < hi)
        hi = (unsigned)rl.rlim_cur - 1;
    if (hi > 65535)
        hi = 65535;
    for (unsigned fd = lo; fd <= hi; fd++)
        close((int)fd);
}

/* Closes every fd above stderr except keep[0..n). */
static void close_all_but(int *keep, int n)
{
    unsigned lo = 3;

    /* Insertion sort: n is 2. */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            int t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        if (keep[i] < (int)lo)
            continue;
        close_span(lo, (unsigned)keep[i] - 1);
        lo = (unsigned)keep[i] + 1;
    }
    close_span(lo, UINT_MAX);
}

/*
 * What a child does right after fork, before its body runs.  keep: the
 * fds it holds on to (besides stdio).  On any doubt it _exits: a child
 * whose supervisor is already gone must not run.
 */
static void child_enter(const sup *s, const char *role, int *keep, int nkeep)
{
    struct sigaction dfl;
    sigset_t none;
    char name[16];

    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != s->self)
        _exit(1);
    setpgid(0, 0);
    /* "sotto-worker0" in ps and top (the kernel keeps 15 bytes). */
    snprintf(name, sizeof name, "sotto-%s", role);
    prctl(PR_SET_NAME, name, 0, 0, 0);
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);   /* fails harmlessly for RT gaps */
    close_all_but(keep, nkeep);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    sotto__log_init(role, s->cfg.log_level);
    sotto__crash_install(s->cfg.state_dir, role);
}

/* Ends a child with its body's exit code.  _exit, not exit: the atexit
 * handlers copied from the supervisor are not the child's to run.  Its
 * stdio output is flushed first (the supervisor flushed its own before
 * fork, so nothing is written twice).  In a sanitized build the child's
 * heap is checked for leaks first: its body has returned, so everything
 * it allocated must have been freed, and a report goes to the log, where
 * the server tests look for it. */
static void child_exit(int code) __attribute__((noreturn));
static void child_exit(int code)
{
#ifdef SOTTO_LSAN
    __lsan_do_recoverable_leak_check();
#endif
    fflush(NULL);
    _exit(code);
}

/* Forks with every signal blocked, so that no handler of the supervisor
 * runs in the child before child_enter() resets them. */
static pid_t fork_blocked(void)
{
    sigset_t all, old;
    pid_t pid;

    /* Nothing buffered may be written twice, by parent and child. */
    fflush(NULL);
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid = fork();
    if (pid != 0)
        sigprocmask(SIG_SETMASK, &old, NULL);
    return pid;
}

/* ---- talking to the gateway -------------------------------------------- */

/*
 * Sends a record to the gateway.  The gateway must read its control
 * socket: one that cannot take a record (it is full, or gone) is broken,
 * so it is killed and restarted like any other dead gateway.
 */
static void send_gw(sup *s, sotto__ctl_msg *m, int fd)
{
    if (s->ctl < 0)
        return;
    if (sotto__ctl_send(s->ctl, m, fd) == 0)
        return;
    if (s->state >= SUP_DRAINING && (errno == EPIPE || errno == ECONNRESET)) {
        /* A draining gateway closes its end as it exits: not a fault. */
        sotto__log(SOTTO_LOG_INFO, 0, "the gateway (pid %d) closed the control "
                   "channel while draining", (int)s->gw.pid);
        close(s->ctl);
        s->ctl = -1;
        s->gw_listening = 0;
        return;
    }
    sotto__log(SOTTO_LOG_ERROR, 0, "cannot send to the gateway (pid %d): %s; "
               "killing it", (int)s->gw.pid, strerror(errno));
    if (s->gw.pid > 0)
        kill(s->gw.pid, SIGKILL);
    close(s->ctl);
    s->ctl = -1;
    s->gw_listening = 0;
}

static void send_state(sup *s, const char *reason)
{
    sotto__ctl_msg m;

    memset(&m, 0, sizeof m);
    m.type = SOTTO__CTL_STATE;
    m.slot = -1;
    snprintf(m.reason, sizeof m.reason, "%s", reason);
    send_gw(s, &m, -1);
}

/* The reason sent when no worker slot can run. */
#define SUP_FATAL_REASON "fatal: every worker exited with a configuration " \
                         "error (see the server log)"

static int all_workers_fatal(const sup *s)
{
    for (int i = 0; i < s->cfg.workers; i++)
        if (!s->w[i].fatal)
            return 0;
    return 1;
}

/* ---- spawning ---------------------------------------------------------- */

static void spawn_gateway(sup *s, double now)
{
    int sv[2] = { -1, -1 };
    pid_t pid;

    s->gw.restart_at = 0;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        goto fail;
    pid = fork_blocked();
    if (pid < 0)
        goto fail;
    if (pid == 0) {
        int keep[2] = { sv[1], s->life_r };
        child_enter(s, "gateway", keep, 2);
        child_exit(sotto__gateway_main(&s->cfg, sv[1], s->life_r));
    }
    close(sv[1]);
    /* Our end never blocks: see send_gw(). */
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    s->ctl = sv[0];
    s->gw.pid = pid;
    s->gw.generation++;
    s->gw.started = now;
    s->gw.killed = 0;
    s->gw_listening = 0;
    s->gw_deadline = now + SUP_LISTEN_TIMEOUT;
    sotto__log(SOTTO_LOG_INFO, 0, "started the gateway (pid %d, generation %d)",
               (int)pid, s->gw.generation);
    return;
fail:
    sotto__log(SOTTO_LOG_ERROR, 0, "cannot start the gateway: %s; retrying "
               "in %g s", strerror(errno), s->cfg.restart_backoff_max);
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    s->gw.restart_at = now + s->cfg.restart_backoff_max;
}

static void spawn_worker(sup *s, int slot, double now)
{
    child *w = &s->w[slot];
    int ch[2] = { -1, -1 };
    char role[32];
    sotto__ctl_msg m;
    pid_t pid;

    w->restart_at = 0;
    if (s->ctl < 0 || !s->gw_listening)
        return;     /* spawned again once a gateway is listening */
    snprintf(role, sizeof role, "worker%d", slot);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ch) != 0)
        goto fail;
    pid = fork_blocked();
    if (pid < 0)
        goto fail;
    if (pid == 0) {
        int keep[2] = { ch[1], s->life_r };
        child_enter(s, role, keep, 2);
        child_exit(sotto__worker_main(&s->cfg, slot, ch[1], s->life_r));
    }
    w->pid = pid;
    w->generation++;
    w->started = now;
    w->killed = 0;
    sotto__log(SOTTO_LOG_INFO, 0, "started %s (pid %d, generation %d)", role,
               (int)pid, w->generation);
    memset(&m, 0, sizeof m);
    m.type = SOTTO__CTL_WORKER_UP;
    m.slot = slot;
    m.pid = (int32_t)pid;
    m.generation = w->generation;
    send_gw(s, &m, ch[0]);
    close(ch[0]);
    close(ch[1]);
    return;
fail:
    sotto__log(SOTTO_LOG_ERROR, 0, "cannot start %s: %s; retrying in %g s",
               role, strerror(errno), s->cfg.restart_backoff_max);
    if (ch[0] >= 0)
        close(ch[0]);
    if (ch[1] >= 0)
        close(ch[1]);
    w->restart_at = now + s->cfg.restart_backoff_max;
}

/* Spawns every worker slot that may run now and has no later restart
 * pending. */
static void spawn_idle_workers(sup *s, double now)
{
    if (s->workers_stopped || s->state > SUP_DRAINING)
        return;
    for (int i = 0; i < s->cfg.workers; i++) {
        child *w = &s->w[i];
        if (w->pid == 0 && !w->fatal && w->restart_at <= now)
            spawn_worker(s, i, now);
    }
}

/* The delay before respawning ch, which just died at now. */
static double next_backoff(const sup *s, child *ch, double now)
{
    double stable = SUP_STABLE_FACTOR * ch->backoff;

    if (stable > SUP_STABLE_RUN)
        stable = SUP_STABLE_RUN;
    if (ch->backoff <= 0 || now - ch->started >= stable)
        ch->backoff = s->cfg.restart_backoff_min;
    else if (ch->backoff * 2 < s->cfg.restart_backoff_max)
        ch->backoff *= 2;
    else
        ch->backoff = s->cfg.restart_backoff_max;
    return ch->backoff;
}

/* ---- stopping ---------------------------------------------------------- */

/* SIGTERM to every child; SIGKILL follows at term_deadline. */
static void enter_stopping(sup *s, double now)
{
    if (s->state >= SUP_STOPPING)
        return;
    s->state = SUP_STOPPING;
    s->term_deadline = now + SUP_TERM_GRACE;
    /* A drain is bounded as a whole: the workers' grace ends with it. */
    if (s->drain_deadline > 0 && s->drain_deadline < s->term_deadline)
        s->term_deadline = s->drain_deadline;
    s->gw.restart_at = 0;
    for (int i = 0; i < s->cfg.workers; i++)
        s->w[i].restart_at = 0;
    kill_child(&s->gw, SIGTERM);
    for (int i = 0; i < s->cfg.workers; i++)
        kill_child(&s->w[i], SIGTERM);
}

/* SIGKILL to every child at once.  failed: the shutdown was forced (a
 * second signal, an overlong drain), which makes the exit status 1; a
 * child slow to take SIGTERM at the end of a drain does not. */
static void enter_killing(sup *s, int failed)
{
    s->state = SUP_KILLING;
    if (failed)
        s->exit_code = 1;
    kill_child(&s->gw, SIGKILL);
    for (int i = 0; i < s->cfg.workers; i++)
        kill_child(&s->w[i], SIGKILL);
}

static void on_stop_signal(sup *s, double now)
{
    int sig = sup_last_signal;
    const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";

    s->stop_signals_seen = sup_stop_signals;
    if (s->state != SUP_RUNNING || s->stop_signals_seen >= 2) {
        sotto__log(SOTTO_LOG_WARN, 0, "%s again: killing every process now",
                   name);
        enter_killing(s, 1);
        return;
    }
    sotto__log(SOTTO_LOG_INFO, 0, "%s: draining (up to %g s; send it again "
               "to stop at once)", name, s->cfg.drain_timeout);
    s->drain_deadline = now + s->cfg.drain_timeout + SUP_DRAIN_SLACK;
    s->gw.restart_at = 0;
    if (s->gw.pid > 0 && s->ctl >= 0) {
        sotto__ctl_msg m;
        memset(&m, 0, sizeof m);
        m.type = SOTTO__CTL_DRAIN;
        m.slot = -1;
        s->state = SUP_DRAINING;
        send_gw(s, &m, -1);
    } else {
        /* No gateway to drain: stop the rest. */
        enter_stopping(s, now);
    }
}

/* ---- deaths ------------------------------------------------------------ */

static void on_gateway_death(sup *s, int st, double now)
{
    char how[96];
    int fatal = WIFEXITED(st) && WEXITSTATUS(st) == SOTTO__EXIT_FATAL;
    int was_killed = s->gw.killed;
    pid_t pid = s->gw.pid;

    describe_status(st, how, sizeof how);
    s->gw.pid = 0;
    s->gw_listening = 0;
    s->gw_deadline = 0;
    if (s->ctl >= 0) {
        close(s->ctl);
        s->ctl = -1;
    }
    if (s->state == SUP_DRAINING) {
        int clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        sotto__log(clean ? SOTTO_LOG_INFO : SOTTO_LOG_WARN, 0,
                   "the gateway %s after draining; stopping the workers", how);
        if (!clean)
            s->exit_code = 1;
        enter_stopping(s, now);
        return;
    }
    if (s->state != SUP_RUNNING) {
        sotto__log(SOTTO_LOG_INFO, 0, "the gateway %s", how);
        return;
    }

    sotto__log(SOTTO_LOG_ERROR, 0, "the gateway (pid %d, generation %d) %s%s; "
               "killing the workers", (int)pid, s->gw.generation, how,
               was_killed ? " (stopped by the supervisor)" : "");
    /* Their clients were on the gateway's sockets and are gone: the
     * workers are stopped and spawned again for the next gateway, which
     * does not count as their deaths. */
    for (int i = 0; i < s->cfg.workers; i++)
        kill_child(&s->w[i], SIGKILL);
    if (fatal) {
        sotto__log(SOTTO_LOG_ERROR, 0, "the gateway cannot run with this "
                   "configuration (is the port in use?); shutting down");
        s->exit_code = 1;
        enter_stopping(s, now);
        return;
    }
    if (death_log_add(&s->gw_deaths, now, s->cfg.crash_loop_window)) {
        sotto__log(SOTTO_LOG_ERROR, 0, "gateway crash loop: %d deaths within "
                   "%g s; shutting down", s->gw_deaths.cap,
                   s->cfg.crash_loop_window);
        s->exit_code = 1;
        enter_stopping(s, now);
        return;
    }
    s->gw.restart_at = now + next_backoff(s, &s->gw, now);
    sotto__log(SOTTO_LOG_INFO, 0, "restarting the gateway in %.2f s",
               s->gw.restart_at - now);
}

static void on_worker_death(sup *s, int slot, int st, double now)
{
    child *w = &s->w[slot];
    char how[96];
    int fatal = WIFEXITED(st) && WEXITSTATUS(st) == SOTTO__EXIT_FATAL;
    int normal_exit = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    int was_killed = w->killed;
    sotto__ctl_msg m;

    describe_status(st, how, sizeof how);
    memset(&m, 0, sizeof m);
    m.type = SOTTO__CTL_WORKER_DOWN;
    m.slot = slot;
    m.pid = (int32_t)w->pid;
    m.generation = w->generation;
    m.exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    m.signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    w->pid = 0;
    w->killed = 0;

    m.expected = was_killed || s->state >= SUP_STOPPING ||
                 (s->state == SUP_DRAINING && normal_exit);
    if (s->state >= SUP_STOPPING || (s->state == SUP_DRAINING && normal_exit)) {
        sotto__log(SOTTO_LOG_INFO, 0, "worker%d (pid %d) %s", slot,
                   (int)m.pid, how);
        send_gw(s, &m, -1);
        return;
    }
    sotto__log(was_killed ? SOTTO_LOG_INFO : SOTTO_LOG_ERROR, 0,
               "worker%d (pid %d, generation %d) %s%s", slot, (int)m.pid,
               m.generation, how,
               was_killed ? " (stopped by the supervisor)" : "");
    send_gw(s, &m, -1);
    if (was_killed) {
        /* Stopped by us (its gateway died): not a crash. */
        spawn_idle_workers(s, now);
        return;
    }
    if (fatal) {
        w->fatal = 1;
        sotto__log(SOTTO_LOG_ERROR, 0, "worker%d cannot run with this "
                   "configuration (exit status %d); not restarting it",
                   slot, SOTTO__EXIT_FATAL);
        if (all_workers_fatal(s)) {
            sotto__log(SOTTO_LOG_ERROR, 0, "no worker can run: %s",
                       SUP_FATAL_REASON);
            send_state(s, SUP_FATAL_REASON);
        }
        return;
    }
    if (s->workers_stopped)
        return;
    if (death_log_add(&s->w_deaths, now, s->cfg.crash_loop_window)) {
        s->workers_stopped = 1;
        for (int i = 0; i < s->cfg.workers; i++)
            s->w[i].restart_at = 0;
        sotto__log(SOTTO_LOG_ERROR, 0, "crash loop: more than %d worker "
                   "deaths within %g s; not restarting workers any more",
                   s->cfg.crash_loop_deaths, s->cfg.crash_loop_window);
        send_state(s, "crash_loop");
        return;
    }
    w->restart_at = now + next_backoff(s, w, now);
    sotto__log(SOTTO_LOG_INFO, 0, "restarting worker%d in %.2f s", slot,
               w->restart_at - now);
}

/* Reaps every child that has exited.  block: wait for each (only once
 * everything has been sent SIGKILL). */
static void reap(sup *s, int block)
{
    for (;;) {
        int st, found = 0;
        pid_t pid = waitpid(-1, &st, block ? 0 : WNOHANG);
        double now = sotto__now();

        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0)
            return;     /* none left (ECHILD) or none exited yet */
        if (pid == s->gw.pid) {
            on_gateway_death(s, st, now);
            found = 1;
        }
        for (int i = 0; i < s->cfg.workers && !found; i++) {
            if (pid == s->w[i].pid) {
                on_worker_death(s, i, st, now);
                found = 1;
            }
        }
        if (!found)
            sotto__log(SOTTO_LOG_DEBUG, 0, "reaped unknown child %d", (int)pid);
    }
}

/* ---- the control socket ------------------------------------------------ */

static void on_ctl_record(sup *s, const sotto__ctl_msg *m, double now)
{
    switch (m->type) {
    case SOTTO__CTL_LISTENING:
        if (m->http_port < 1 || m->http_port > 65535 || m->tcp_port < -1 ||
            m->tcp_port > 65535 || m->vosk_port < -1 || m->vosk_port > 65535 ||
            m->whisperlive_port < -1 || m->whisperlive_port > 65535 ||
            m->wyoming_port < -1 || m->wyoming_port > 65535) {
            sotto__log(SOTTO_LOG_ERROR, 0, "the gateway reported bad ports "
                       "(http %d, tcp %d); killing it", (int)m->http_port,
                       (int)m->tcp_port);
            kill(s->gw.pid, SIGKILL);   /* its fault: counts as a death */
            return;
        }
        sotto__log(SOTTO_LOG_INFO, 0, "listening http=%d tcp=%d vosk=%d whisperlive=%d "
                   "wyoming=%d (address %s)", (int)m->http_port, (int)m->tcp_port,
                   (int)m->vosk_port, (int)m->whisperlive_port, (int)m->wyoming_port,
                   s->cfg.listen);
        /* A restarted gateway binds the same ports, even ephemeral ones. */
        if (s->cfg.http_port == 0)
            s->cfg.http_port = m->http_port;
        if (s->cfg.tcp_port == 0 && m->tcp_port > 0)
            s->cfg.tcp_port = m->tcp_port;
        if (s->cfg.vosk_port == 0 && m->vosk_port > 0)
            s->cfg.vosk_port = m->vosk_port;
        if (s->cfg.whisperlive_port == 0 && m->whisperlive_port > 0)
            s->cfg.whisperlive_port = m->whisperlive_port;
        if (s->cfg.wyoming_port == 0 && m->wyoming_port > 0)
            s->cfg.wyoming_port = m->wyoming_port;
        s->gw_listening = 1;
        s->gw_deadline = 0;
        if (s->workers_stopped)
            send_state(s, "crash_loop");
        else if (all_workers_fatal(s))
            send_state(s, SUP_FATAL_REASON);
        spawn_idle_workers(s, now);
        return;
    case SOTTO__CTL_KILL_WORKER:
        if (m->slot >= 0 && m->slot < s->cfg.workers && m->pid > 0 &&
            s->w[m->slot].pid == m->pid) {
            sotto__log(SOTTO_LOG_WARN, 0, "killing worker%d (pid %d): %s",
                       (int)m->slot, (int)m->pid, m->reason);
            kill(m->pid, SIGKILL);
        } else {
            sotto__log(SOTTO_LOG_DEBUG, 0, "ignoring a request to kill "
                       "worker%d pid %d: no longer running", (int)m->slot,
                       (int)m->pid);
        }
        return;
    default:
        sotto__log(SOTTO_LOG_WARN, 0, "unexpected control record of type %d "
                   "from the gateway", (int)m->type);
        return;
    }
}

static void read_ctl(sup *s, double now)
{
    for (int i = 0; i < SUP_CTL_BATCH && s->ctl >= 0; i++) {
        sotto__ctl_msg m;
        int fd = -1;
        int rc = sotto__ctl_recv(s->ctl, &m, &fd);

        if (rc == 1) {
            if (fd >= 0)
                close(fd);  /* nothing the gateway sends carries one */
            on_ctl_record(s, &m, now);
            continue;
        }
        if (rc == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (rc == -2) {
            sotto__log(SOTTO_LOG_ERROR, 0, "malformed control record from "
                       "the gateway; killing it");
            if (s->gw.pid > 0)
                kill(s->gw.pid, SIGKILL);
        } else if (s->state == SUP_RUNNING) {
            /* EOF or error: the gateway is on its way out (its death is
             * logged when it is reaped).  If it does not exit soon, it is
             * killed, and that is logged as an error. */
            sotto__log(SOTTO_LOG_DEBUG, 0, "the gateway closed its control "
                       "socket%s%s", rc < 0 ? ": " : "",
                       rc < 0 ? strerror(errno) : "");
            if (s->gw.pid > 0 &&
                (s->gw_deadline == 0 || s->gw_deadline > now + SUP_TERM_GRACE))
                s->gw_deadline = now + SUP_TERM_GRACE;
        }
        close(s->ctl);
        s->ctl = -1;
        s->gw_listening = 0;
        return;
    }
}

/* ---- timers ------------------------------------------------------------ */

static void run_timers(sup *s, double now)
{
    if (s->state == SUP_RUNNING && s->gw.pid == 0 && s->gw.restart_at > 0 &&
        now >= s->gw.restart_at)
        spawn_gateway(s, now);
    if (s->gw.pid > 0 && s->gw_deadline > 0 && now >= s->gw_deadline &&
        s->state <= SUP_DRAINING) {
        sotto__log(SOTTO_LOG_ERROR, 0, "the gateway (pid %d) %s; killing it",
                   (int)s->gw.pid, s->ctl >= 0
                       ? "did not report listening in time"
                       : "did not exit after closing its control socket");
        kill(s->gw.pid, SIGKILL);
        s->gw_deadline = 0;
    }
    if (s->state <= SUP_DRAINING && s->gw_listening && !s->workers_stopped) {
        for (int i = 0; i < s->cfg.workers; i++) {
            child *w = &s->w[i];
            if (w->pid == 0 && !w->fatal && w->restart_at > 0 &&
                now >= w->restart_at)
                spawn_worker(s, i, now);
        }
    }
    if (s->state == SUP_DRAINING && now >= s->drain_deadline) {
        sotto__log(SOTTO_LOG_WARN, 0, "the drain took longer than %g s; "
                   "killing every process", s->cfg.drain_timeout +
                   SUP_DRAIN_SLACK);
        enter_killing(s, 1);
    }
    if (s->state == SUP_STOPPING && now >= s->term_deadline &&
        live_children(s) > 0) {
        sotto__log(SOTTO_LOG_WARN, 0, "%d process(es) still there %g s after "
                   "SIGTERM; killing them", live_children(s), SUP_TERM_GRACE);
        enter_killing(s, 0);
    }
}

/* Milliseconds until the next timer, or -1 for none. */
static int next_timeout_ms(const sup *s, double now)
{
    double next = -1;

#define SUP_CONSIDER(t)                                                     \
    do {                                                                    \
        double t_ = (t);                                                    \
        if (t_ > 0 && (next < 0 || t_ < next))                              \
            next = t_;                                                      \
    } while (0)

    if (s->state == SUP_RUNNING && s->gw.pid == 0)
        SUP_CONSIDER(s->gw.restart_at);
    if (s->gw.pid > 0 && s->state <= SUP_DRAINING)
        SUP_CONSIDER(s->gw_deadline);
    if (s->state <= SUP_DRAINING && s->gw_listening && !s->workers_stopped)
        for (int i = 0; i < s->cfg.workers; i++)
            if (s->w[i].pid == 0 && !s->w[i].fatal)
                SUP_CONSIDER(s->w[i].restart_at);
    if (s->state == SUP_DRAINING)
        SUP_CONSIDER(s->drain_deadline);
    if (s->state == SUP_STOPPING)
        SUP_CONSIDER(s->term_deadline);
#undef SUP_CONSIDER

    if (next < 0)
        return -1;
    if (next <= now)
        return 0;
    /* Round up, so the timer is due when poll returns. */
    return (next - now) * 1000.0 + 1.0 > INT_MAX
               ? INT_MAX : (int)((next - now) * 1000.0 + 1.0);
}

/* ---- the loop ---------------------------------------------------------- */

static int run_loop(sup *s)
{
    spawn_gateway(s, sotto__now());
    for (;;) {
        struct pollfd pfd[2];
        int nfd = 0, rc;
        double now = sotto__now();

        if (s->state >= SUP_STOPPING && live_children(s) == 0)
            break;
        if (s->state == SUP_KILLING) {
            /* Everything has SIGKILL: wait for each, then finish. */
            reap(s, 1);
            break;
        }
        pfd[nfd].fd = s->sig_r;
        pfd[nfd].events = POLLIN;
        pfd[nfd++].revents = 0;
        if (s->ctl >= 0) {
            pfd[nfd].fd = s->ctl;
            pfd[nfd].events = POLLIN;
            pfd[nfd++].revents = 0;
        }
        rc = poll(pfd, (nfds_t)nfd, next_timeout_ms(s, now));
        if (rc < 0 && errno != EINTR) {
            sotto__log(SOTTO_LOG_ERROR, 0, "poll: %s; killing every process",
                       strerror(errno));
            enter_killing(s, 1);
            continue;
        }
        if (rc > 0 && (pfd[0].revents & POLLIN)) {
            char buf[64];
            while (read(s->sig_r, buf, sizeof buf) > 0)
                ;
        }
        now = sotto__now();
        if (sup_stop_signals != s->stop_signals_seen)
            on_stop_signal(s, now);
        if (s->state == SUP_KILLING)
            continue;
        reap(s, 0);
        if (rc > 0 && nfd > 1 && pfd[1].revents != 0 && s->ctl == pfd[1].fd)
            read_ctl(s, now);
        run_timers(s, sotto__now());
    }
    /* Nothing of ours is left; collect anything else until ECHILD. */
    reap(s, 1);
    sotto__log(SOTTO_LOG_INFO, 0, "stopped (exit status %d)", s->exit_code);
    return s->exit_code;
}

int sotto__supervisor_run(const sotto__serve_config *c)
{
    static const int handled[] = { SIGCHLD, SIGTERM, SIGINT, SIGPIPE };
    struct sigaction old[sizeof handled / sizeof handled[0]];
    sigset_t wanted, old_mask;
    int installed = 0, unblocked = 0, sigp[2] = { -1, -1 }, life[2] = { -1, -1 }, rc = 1;
    sup *s = calloc(1, sizeof *s);

    sotto__log_init("supervisor", c->log_level);
    if (s == NULL) {
        sotto__log(SOTTO_LOG_ERROR, 0, "out of memory");
        return 1;
    }
    s->cfg = *c;
    s->self = getpid();
    s->ctl = -1;
    s->state = SUP_RUNNING;
    if (s->cfg.workers < 1 || s->cfg.workers > SOTTO__SERVE_MAX_WORKERS ||
        s->cfg.crash_loop_deaths < 1) {
        sotto__log(SOTTO_LOG_ERROR, 0, "bad configuration: %d workers, "
                   "crash-loop-deaths %d", s->cfg.workers,
                   s->cfg.crash_loop_deaths);
        goto fail;
    }

    /* The state directory (made by the crash-record setup). */
    sotto__crash_install(s->cfg.state_dir, "supervisor");
    /* The children write their crash records there after --user. */
    if (s->cfg.user[0] != 0 && geteuid() == 0 &&
        chown(s->cfg.state_dir, (uid_t)s->cfg.user_uid, (gid_t)s->cfg.user_gid) != 0)
        sotto__log(SOTTO_LOG_WARN, 0, "cannot give %s to %s: %s", s->cfg.state_dir,
                   s->cfg.user, strerror(errno));
    if (access(s->cfg.state_dir, W_OK | X_OK) != 0) {
        sotto__log(SOTTO_LOG_ERROR, 0, "state directory %s: %s",
                   s->cfg.state_dir, strerror(errno));
        goto fail;
    }
    if (pipe2(sigp, O_CLOEXEC | O_NONBLOCK) != 0 ||
        pipe2(life, O_CLOEXEC) != 0) {
        sotto__log(SOTTO_LOG_ERROR, 0, "pipe: %s", strerror(errno));
        goto fail;
    }
    s->sig_r = sigp[0];
    s->life_r = life[0];
    s->life_w = life[1];
    /* "More than K deaths within T": the breaker looks at K + 1. */
    if (death_log_init(&s->gw_deaths, s->cfg.crash_loop_deaths + 1) != 0 ||
        death_log_init(&s->w_deaths, s->cfg.crash_loop_deaths + 1) != 0) {
        sotto__log(SOTTO_LOG_ERROR, 0, "out of memory");
        goto fail;
    }

    sup_sigpipe_w = sigp[1];
    sup_stop_signals = 0;
    sup_last_signal = 0;
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        /* SIGPIPE: a closed stderr must not kill the supervisor. */
        sa.sa_handler = handled[i] == SIGPIPE ? SIG_IGN : sup_on_signal;
        sa.sa_flags = SA_RESTART | (handled[i] == SIGCHLD ? SA_NOCLDSTOP : 0);
        sigemptyset(&sa.sa_mask);
        if (sigaction(handled[i], &sa, &old[i]) != 0) {
            sotto__log(SOTTO_LOG_ERROR, 0, "sigaction: %s", strerror(errno));
            goto fail;
        }
        installed = (int)i + 1;
    }
    /* A caller may have blocked them; the loop depends on them. */
    sigemptyset(&wanted);
    sigaddset(&wanted, SIGCHLD);
    sigaddset(&wanted, SIGTERM);
    sigaddset(&wanted, SIGINT);
    sigprocmask(SIG_UNBLOCK, &wanted, &old_mask);
    unblocked = 1;

    sotto__log(SOTTO_LOG_INFO, 0, "starting: model %s, %d worker(s), "
               "state directory %s", s->cfg.model, s->cfg.workers,
               s->cfg.state_dir);
    rc = run_loop(s);

fail:
    if (unblocked)
        sigprocmask(SIG_SETMASK, &old_mask, NULL);
    for (int i = installed - 1; i >= 0; i--)
        sigaction(handled[i], &old[i], NULL);
    sup_sigpipe_w = -1;
    if (s->ctl >= 0)
        close(s->ctl);
    for (int i = 0; i < 2; i++) {
        if (sigp[i] >= 0)
            close(sigp[i]);
        if (life[i] >= 0)
            close(life[i]);
    }
    free(s->gw_deaths.t);
    free(s->w_deaths.t);
    free(s);
    return rc;
}
