/*
 * privs.c - what a child of `sotto serve` gives up once it no longer needs
 * it: root, for the --user account (the gateway after binding its ports,
 * a worker after mapping the model), and for a worker, the network.
 *
 * A worker only ever talks over the socketpair it inherited; a network
 * namespace of its own (empty: not even a loopback that is up) means that
 * code that goes wrong in it, a decoder fed a hostile file say, cannot
 * reach any other host or local service.  That takes root
 * (CAP_SYS_ADMIN); without it the worker says so and runs as it is.
 *
 * On top of that, and without needing root, a worker installs a seccomp
 * filter (libseccomp) before it reads anything from outside: it denies the
 * system calls a worker never makes and an attacker would want (network
 * sockets, connecting and listening, running programs, tracing other
 * processes, namespaces, mounts, kernel modules, BPF and the like) with
 * EPERM.  It is a deny list over an allowed default, on purpose: the
 * engine's libraries (OpenBLAS, OpenMP, FFTW, libsndfile, libopus, glibc's
 * allocator) may make any ordinary call, and a call missing from an allow
 * list would turn a library upgrade into a worker that dies on its first
 * stream.
 */
#include <errno.h>
#include <grp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

#include "sotto.h"
#include "server/server.h"

int sotto__drop_privileges(const sotto__serve_config *c)
{
    if (c->user[0] == 0 || geteuid() != 0)
        return 0;
    if (setgroups(0, NULL) != 0 || setgid((gid_t)c->user_gid) != 0 ||
        setuid((uid_t)c->user_uid) != 0) {
        sotto__log(SOTTO_LOG_ERROR, 0, "cannot become user %s: %s", c->user, strerror(errno));
        return -1;
    }
    /* Root must not be regained. */
    if (setuid(0) == 0) {
        sotto__log(SOTTO_LOG_ERROR, 0, "could become root again after dropping to %s",
                   c->user);
        return -1;
    }
    sotto__log(SOTTO_LOG_DEBUG, 0, "running as %s (uid %d)", c->user, c->user_uid);
    return 0;
}

void sotto__isolate_network(void)
{
    if (unshare(CLONE_NEWNET) != 0)
        sotto__log(geteuid() == 0 ? SOTTO_LOG_WARN : SOTTO_LOG_DEBUG, 0,
                   "no network namespace of its own (%s): the worker keeps the "
                   "host's network", strerror(errno));
}

/*
 * System calls a worker never makes, denied with EPERM.  execve and ptrace
 * are kept in sanitizer builds, whose reports run a symbolizer and whose
 * leak checker stops the process's threads with ptrace.
 *
 * socket() is denied for every family: the worker's only channel is
 * inherited, and even an AF_UNIX datagram socket could send to a path
 * (/dev/log, a local service's socket) that a network namespace does not
 * cover.  socketpair() stays, since a pair reaches nothing outside the
 * process.  io_uring is denied because its requests (connect, socket,
 * openat) are not system calls a filter sees one by one.
 */
static const int worker_denied[] = {
    SCMP_SYS(socket), SCMP_SYS(io_uring_setup), SCMP_SYS(io_uring_enter),
    SCMP_SYS(io_uring_register),
    SCMP_SYS(connect), SCMP_SYS(bind), SCMP_SYS(listen), SCMP_SYS(accept),
    SCMP_SYS(accept4), SCMP_SYS(unshare), SCMP_SYS(setns), SCMP_SYS(mount),
    SCMP_SYS(umount2), SCMP_SYS(pivot_root), SCMP_SYS(chroot),
    SCMP_SYS(kexec_load), SCMP_SYS(kexec_file_load), SCMP_SYS(init_module),
    SCMP_SYS(finit_module), SCMP_SYS(delete_module), SCMP_SYS(bpf),
    SCMP_SYS(perf_event_open), SCMP_SYS(keyctl), SCMP_SYS(add_key),
    SCMP_SYS(request_key), SCMP_SYS(swapon), SCMP_SYS(swapoff),
    SCMP_SYS(reboot), SCMP_SYS(settimeofday), SCMP_SYS(clock_settime),
    SCMP_SYS(acct), SCMP_SYS(userfaultfd), SCMP_SYS(open_by_handle_at),
    SCMP_SYS(name_to_handle_at), SCMP_SYS(process_vm_writev),
#ifndef SOTTO__SANITIZED
    SCMP_SYS(execve), SCMP_SYS(execveat), SCMP_SYS(ptrace),
    SCMP_SYS(process_vm_readv),
#endif
};

int sotto__sandbox_worker(void)
{
    scmp_filter_ctx f = seccomp_init(SCMP_ACT_ALLOW);
    const char *what = "seccomp_init";
    int rc = -ENOMEM;

    if (f == NULL)
        goto fail;
    /* Every thread, the ones OpenMP may have started included. */
    what = "the thread-sync attribute";
    if ((rc = seccomp_attr_set(f, SCMP_FLTATR_CTL_TSYNC, 1)) != 0)
        goto fail;
    for (size_t i = 0; i < sizeof worker_denied / sizeof worker_denied[0]; i++) {
        /* A call this architecture lacks cannot be made anyway. */
        if (worker_denied[i] < 0)
            continue;
        what = "a denied call";
        if ((rc = seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), worker_denied[i], 0)) != 0)
            goto fail;
    }
    what = "seccomp_load";
    if ((rc = seccomp_load(f)) != 0)
        goto fail;
    seccomp_release(f);
    sotto__log(SOTTO_LOG_DEBUG, 0, "seccomp filter installed");
    return 0;
fail:
    sotto__log(SOTTO_LOG_WARN, 0, "no seccomp filter (%s: %s): the worker runs "
               "without it", what, strerror(rc < 0 ? -rc : rc));
    seccomp_release(f);
    return -1;
}
