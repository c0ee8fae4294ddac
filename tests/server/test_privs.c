/*
 * test_privs.c - what a worker gives up (src/server/privs.c): after
 * sotto__sandbox_worker(), in a child process and on a second thread, the
 * network calls (socket() of every family, io_uring) and the other denied
 * calls fail with EPERM, while what a worker does (files, AF_UNIX socket
 * pairs, threads, memory) still works.
 * The filter cannot be removed once installed, so every check runs in a
 * forked child that writes a bit per failed check to a pipe.
 */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include "sotto.h"
#include "server/server.h"

/* The log callback of the server's code is its own; the filter logs
 * through it, which goes to stderr. */

enum {
    F_INSTALL = 1 << 0,     /* sotto__sandbox_worker() failed */
    F_INET = 1 << 1,        /* socket(AF_INET) was allowed */
    F_INET6 = 1 << 2,       /* socket(AF_INET6, SOCK_DGRAM) was allowed */
    F_UNIX = 1 << 3,        /* socketpair(AF_UNIX) was refused */
    F_CONNECT = 1 << 4,     /* connect() on an AF_UNIX socket was allowed */
    F_EXEC = 1 << 5,        /* execve() was allowed */
    F_FILES = 1 << 6,       /* open/write/read of a temporary file failed */
    F_THREAD = 1 << 7,      /* a thread started after the filter was not
                             * filtered, or could not start */
    F_MEMORY = 1 << 8,      /* mmap of 64 MiB failed */
    F_UNSHARE = 1 << 9,     /* unshare() was allowed */
    F_UNIXSOCK = 1 << 10,   /* socket(AF_UNIX, SOCK_DGRAM) was allowed */
    F_URING = 1 << 11,      /* io_uring_setup() was allowed */
};

static int denied(long rc)
{
    return rc < 0 && errno == EPERM;
}

static void *thread_main(void *arg)
{
    int *bad = arg;

    *bad = !denied(socket(AF_INET, SOCK_STREAM, 0));
    return NULL;
}

static int sandboxed_checks(void)
{
    int fails = 0, sp[2], fd, bad = 1;
    char path[] = "/tmp/sotto-test-privs-XXXXXX", buf[4];
    struct sockaddr_un un = { .sun_family = AF_UNIX, .sun_path = "/tmp/none" };
    pthread_t th;
    void *p;

    if (sotto__sandbox_worker() != 0)
        return F_INSTALL;
    if (!denied(socket(AF_INET, SOCK_STREAM, 0)))
        fails |= F_INET;
    if (!denied(socket(AF_INET6, SOCK_DGRAM, 0)))
        fails |= F_INET6;
    if (!denied(socket(AF_UNIX, SOCK_DGRAM, 0)))
        fails |= F_UNIXSOCK;
    {
        /* struct io_uring_params is 120 bytes; zeros ask for defaults. */
        unsigned char params[120] = { 0 };
        if (!denied(syscall(SYS_io_uring_setup, 4, params)))
            fails |= F_URING;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0) {
        fails |= F_UNIX;
    } else {
        if (!denied(connect(sp[0], (struct sockaddr *)&un, sizeof un)))
            fails |= F_CONNECT;
        close(sp[0]);
        close(sp[1]);
    }
#ifndef SOTTO__SANITIZED
    {
        char *const argv[] = { "/bin/true", NULL };
        if (!denied(execv("/bin/true", argv)))
            fails |= F_EXEC;
    }
#endif
    if (!denied(syscall(SYS_unshare, 0)))
        fails |= F_UNSHARE;
    if ((fd = mkstemp(path)) < 0 || write(fd, "ok", 2) != 2 ||
        lseek(fd, 0, SEEK_SET) != 0 || read(fd, buf, 2) != 2)
        fails |= F_FILES;
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }
    if (pthread_create(&th, NULL, thread_main, &bad) != 0 || pthread_join(th, NULL) != 0 ||
        bad)
        fails |= F_THREAD;
    p = mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        fails |= F_MEMORY;
    else
        munmap(p, 64 << 20);
    return fails;
}

int main(void)
{
    int st = 0, fails = -1, pp[2];
    pid_t pid;

    sotto__log_init("test_privs", SOTTO_LOG_WARN);
    CHECK(pipe(pp) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int f = sandboxed_checks();
        _exit(write(pp[1], &f, sizeof f) == (ssize_t)sizeof f ? 0 : 1);
    }
    close(pp[1]);
    CHECK(read(pp[0], &fails, sizeof fails) == (ssize_t)sizeof fails);
    close(pp[0]);
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_INT_EQ(fails & F_INSTALL, 0);
    CHECK_INT_EQ(fails & F_INET, 0);
    CHECK_INT_EQ(fails & F_INET6, 0);
    CHECK_INT_EQ(fails & F_UNIX, 0);
    CHECK_INT_EQ(fails & F_CONNECT, 0);
    CHECK_INT_EQ(fails & F_EXEC, 0);
    CHECK_INT_EQ(fails & F_FILES, 0);
    CHECK_INT_EQ(fails & F_THREAD, 0);
    CHECK_INT_EQ(fails & F_MEMORY, 0);
    CHECK_INT_EQ(fails & F_UNSHARE, 0);
    CHECK_INT_EQ(fails & F_UNIXSOCK, 0);
    CHECK_INT_EQ(fails & F_URING, 0);
    CHECK_INT_EQ(fails, 0);

    /* The parent was never filtered. */
    {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(s >= 0);
        if (s >= 0)
            close(s);
    }
    return test_main_exit("test_privs");
}
