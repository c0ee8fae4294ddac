/*
 * server.h - `sotto serve`: configuration, the three kinds of process,
 * and the control channel between the supervisor and the gateway
 * (internal).
 *
 * Processes (docs/server.md has the full picture):
 *
 *   supervisor  sotto__supervisor_run().  Forks the gateway and the
 *               workers, reaps them in a waitpid loop, restarts them with
 *               backoff, stops after a crash loop, and drives shutdown.
 *               It loads no model and touches no client.
 *   gateway     sotto__gateway_main().  One libwebsockets event loop that
 *               owns every client socket (HTTP, WebSocket, raw TCP) and
 *               every worker channel.  It never runs inference and never
 *               decodes a codec.
 *   worker      sotto__worker_main().  Loads the model (mmap'd, shared)
 *               and runs the streams the gateway assigns to it, one
 *               inference at a time.
 *
 * Channels:
 *   supervisor <-> gateway   a SOCK_SEQPACKET socketpair carrying
 *                            sotto__ctl_msg records, and the gateway end of
 *                            each new worker channel as SCM_RIGHTS;
 *   gateway <-> worker       a SOCK_STREAM socketpair per worker (ipc.h);
 *   supervisor -> children   each child holds the read end of a "life
 *                            pipe" whose write end only the supervisor
 *                            holds: EOF on it means the supervisor is
 *                            gone, on top of PR_SET_PDEATHSIG.
 */
#ifndef SOTTO_SERVER_H
#define SOTTO_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Named limits.  Each has a config key and a flag (docs/server.md). */
#define SOTTO__SERVE_MAX_WORKERS 64
/* Largest WebSocket message / raw TCP read handed on as one chunk. */
#define SOTTO__SERVE_MAX_FRAME (1u << 20)
/* Longest JSON control message a client may send. */
#define SOTTO__SERVE_MAX_CONTROL 4096
/* Longest path or address in the configuration. */
#define SOTTO__SERVE_MAX_PATH 1024
/* Longest API key (--api-key). */
#define SOTTO__SERVE_MAX_KEY 255

/* Exit status of a child that must not be respawned: its configuration
 * is wrong (a model that does not load, a port that cannot be bound), so
 * a restart would fail the same way.  (EX_CONFIG of sysexits.h.) */
#define SOTTO__EXIT_FATAL 78

/* Exit status of a worker that ran out of memory inside the engine (its
 * --worker-memory limit, or the machine's): it is restarted like any dead
 * worker, and its streams are replayed elsewhere.  (EX_TEMPFAIL.) */
#define SOTTO__EXIT_NOMEM 75

/* Sanitizer builds, which reserve terabytes of address space for their
 * shadow memory: an address-space limit cannot work there. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SOTTO__SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define SOTTO__SANITIZED 1
#endif
#endif

typedef struct sotto__serve_config {
    /* Model and engine. */
    char model[SOTTO__SERVE_MAX_PATH];      /* folder or installed name */
    char vad_model[SOTTO__SERVE_MAX_PATH];  /* safetensors file; "" = the
                                             * installed silero-vad */
    int workers;             /* engine processes; 2 */
    int threads;             /* inference threads per worker; 1 */
    size_t worker_memory;    /* RLIMIT_AS of each worker in bytes; 0 =
                              * none (the default) */

    /* Listeners. */
    char listen[256];        /* bind address; "127.0.0.1" */
    int http_port;           /* HTTP + WebSocket; 8080 (0 = ephemeral) */
    int tcp_port;            /* raw TCP (whisper_streaming); 43007; -1 off */
    int vosk_port;           /* vosk-server's WebSocket protocol on any
                              * path; 2700; -1 off (/vosk still works) */
    int whisperlive_port;    /* WhisperLive's; 9090; -1 off (/whisperlive
                              * still works) */
    int wyoming_port;        /* Wyoming (Home Assistant), raw TCP; 10300;
                              * -1 off */
    char state_dir[SOTTO__SERVE_MAX_PATH]; /* crash files, port file */
    int tcp_port_set, wyoming_port_set;    /* given in the file or a flag */

    /* Security. */
    char api_key[SOTTO__SERVE_MAX_KEY + 1]; /* "" = none; else every
                                             * endpoint but /health and
                                             * the page needs it */
    char tls_cert[SOTTO__SERVE_MAX_PATH];  /* PEM files; both or neither */
    char tls_key[SOTTO__SERVE_MAX_PATH];
    char user[64];                         /* --user: "" = stay who we are */
    int user_uid, user_gid;                /* resolved from user at start */

    /* Admission and per-connection limits. */
    int max_streams;              /* concurrent streams; 8 */
    size_t max_frame;             /* bytes per WS message; 1 MiB */
    double idle_timeout;          /* s without input before close; 30 */
    double max_stream_seconds;    /* audio per stream; 14400 */
    double max_ahead;             /* s of audio a client may be ahead of
                                   * real time before the gateway stops
                                   * reading from it; 30 */
    size_t max_outbound;          /* bytes queued to a slow reader; 1 MiB */
    size_t max_upload;            /* bytes of one file POSTed to the
                                   * OpenAI endpoint; 25 MiB */
    size_t max_pending_audio;     /* bytes of audio queued for a worker
                                   * before reading pauses; 4 MiB */

    /* Watchdog and restarts. */
    double inference_timeout;     /* s in one inference before SIGKILL; 30 */
    double heartbeat_timeout;     /* s without a heartbeat before SIGKILL; 5 */
    double restart_backoff_min;   /* s; 0.1, doubling per quick death */
    double restart_backoff_max;   /* s; 5 */
    int crash_loop_deaths;        /* more than K deaths ... ; 5 */
    double crash_loop_window;     /* ... within T seconds trip the breaker; 30 */
    double drain_timeout;         /* s for the first-signal drain; 10 */

    /* Stream defaults a client may override. */
    int partials;                 /* 1 */
    int vad;                      /* 1 */
    char language[16];            /* "" = the model's default */

    int log_level;                /* SOTTO_LOG_*; INFO */
} sotto__serve_config;

/* The defaults above. */
void sotto__serve_config_defaults(sotto__serve_config *c);

/*
 * Reads an INI file into c (keys as in docs/server.md, section [serve]).
 * Returns 0, or -1 with a message naming the line and key in err.
 */
int sotto__serve_config_load(sotto__serve_config *c, const char *path,
                             char *err, size_t errcap);

/*
 * Sets one option by its key (the INI key, also the long flag without
 * "--"), with range checks.  Returns 0, or -1 with a message in err.
 */
int sotto__serve_config_set(sotto__serve_config *c, const char *key,
                            const char *value, char *err, size_t errcap);

/* ---- the supervisor <-> gateway control channel ------------------------- */

enum sotto__ctl_type {
    /* supervisor -> gateway */
    SOTTO__CTL_WORKER_UP = 1,     /* a worker was spawned; its channel fd
                                   * comes as SCM_RIGHTS */
    SOTTO__CTL_WORKER_DOWN = 2,   /* a worker was reaped: status, signal */
    SOTTO__CTL_STATE = 3,         /* supervisor state change (reason) */
    SOTTO__CTL_DRAIN = 4,         /* first signal: drain, then exit 0 */
    /* gateway -> supervisor */
    SOTTO__CTL_LISTENING = 16,    /* ports bound (http_port, tcp_port) */
    SOTTO__CTL_KILL_WORKER = 17   /* the watchdog wants slot killed */
};

typedef struct sotto__ctl_msg {
    int32_t type;                 /* enum sotto__ctl_type */
    int32_t slot;                 /* worker slot, 0 .. workers-1 */
    int32_t pid;
    int32_t generation;           /* spawn count of the slot */
    int32_t exit_status;          /* WORKER_DOWN: exit code, or -1 */
    int32_t signal;               /* WORKER_DOWN: killing signal, or 0 */
    int32_t expected;             /* WORKER_DOWN: 1 when the supervisor
                                   * stopped it (shutdown, its gateway died),
                                   * so it is not a crash */
    int32_t http_port, tcp_port;  /* LISTENING; -1 for a port that is off */
    int32_t vosk_port, whisperlive_port, wyoming_port;
    char reason[96];              /* STATE: "" | "crash_loop" ...; KILL:
                                   * why; NUL-terminated */
} sotto__ctl_msg;

/* Sends a record, with an fd attached when fd >= 0.  0 or -1 (errno). */
int sotto__ctl_send(int sock, const sotto__ctl_msg *m, int fd);
/* Receives one record and the fd attached, if any (*fd = -1 if none).
 * Returns 1, 0 on EOF, -1 on error (errno), -2 for a malformed record. */
int sotto__ctl_recv(int sock, sotto__ctl_msg *m, int *fd);

/* ---- processes --------------------------------------------------------- */

/* Runs `sotto serve`: returns the process exit code. */
int sotto__supervisor_run(const sotto__serve_config *c);

/* `sotto serve [--config FILE] [--KEY VALUE ...]` (serve_cli.c): builds
 * the configuration (defaults, then the file, then the flags), checks the
 * model, and runs the supervisor.  argv[0] is "serve".  Returns the exit
 * code: 2 for bad usage or configuration, else the supervisor's. */
int sotto__serve_main(int argc, char **argv);

/* The gateway process body.  ctl: the control socket; life: the read end
 * of the life pipe.  Returns the exit code. */
int sotto__gateway_main(const sotto__serve_config *c, int ctl, int life);

/* A worker process body.  chan: its gateway channel. */
int sotto__worker_main(const sotto__serve_config *c, int slot, int chan,
                       int life);

/* ---- logging ----------------------------------------------------------- */

/*
 * Writes one line to stderr:
 *   2026-11-28T03:50:00.123Z INFO  gateway[1234] stream=17: message
 * role is "supervisor", "gateway" or "worker1"...; stream 0 is omitted.
 * Lines above the configured level are dropped.  Safe to call from any
 * thread (one write(2) per line); not from a signal handler.
 */
void sotto__log_init(const char *role, int level);
void sotto__log(int level, uint32_t stream, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- privileges (privs.c) ------------------------------------------------ */

/* Started as root with --user: becomes that user for good (groups, gid,
 * uid).  0, or -1 (logged).  Does nothing otherwise. */
int sotto__drop_privileges(const sotto__serve_config *c);
/* Gives the calling worker a network namespace of its own, with no
 * interface up; logs and goes on where that is not allowed. */
void sotto__isolate_network(void);
/* Installs the worker's seccomp filter (privs.c explains what it denies)
 * on every thread of the process.  0, or -1 when the kernel or libseccomp
 * refuses (logged; the worker goes on without it). */
int sotto__sandbox_worker(void);

/* ---- crash records ----------------------------------------------------- */

/*
 * Installs handlers for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT that
 * write a crash record (the signal, the fault address, the streams in
 * flight, and a backtrace) to stderr and to
 * <state_dir>/crash-<role>-<pid>-<time>.txt using only async-signal-safe
 * calls, then re-raise the signal so the parent sees it.  The crash file
 * is opened with the name fixed at install time.
 */
void sotto__crash_install(const char *state_dir, const char *role);
/* Records the streams in flight for the crash record (lock-free; called
 * by the worker around each inference).  ids: up to 8 ids. */
void sotto__crash_set_streams(const uint32_t *ids, int n);

/*
 * Writes the crash record of another process, one that died without
 * writing its own: killed by a signal its handler cannot catch (SIGKILL,
 * from the watchdog or from outside), or exited with a failure status.
 * The gateway calls it when the supervisor reports such a worker death,
 * with what only the gateway knows: the streams the worker held (busy:
 * the one in inference, or 0) and why the gateway lost it.  The file is
 * <state_dir>/crash-<role>-<pid>-<time>.txt like the handler's, with
 * "backtrace: none" and the reason; the path goes to the log.  Not
 * async-signal-safe.  Returns 0, or -1 (errno) when no file was written.
 */
int sotto__crash_record_death(const char *state_dir, const char *role, int pid,
                              int exit_status, int sig, const char *detail,
                              const uint32_t *streams, int n_streams,
                              uint32_t busy);

/* 1 if sig is one of the signals whose handler writes its own record. */
int sotto__crash_signal_recorded(int sig);

/* Monotonic seconds. */
double sotto__now(void);

#endif
