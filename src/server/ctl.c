/*
 * ctl.c - records on the supervisor <-> gateway control channel.
 *
 * The channel is an AF_UNIX SOCK_SEQPACKET socketpair, so each
 * sotto__ctl_msg travels as one datagram with its boundaries kept: a
 * receiver never sees half a record or two records glued together.  The
 * only fd that ever crosses it is the gateway end of a new worker channel,
 * attached to SOTTO__CTL_WORKER_UP as SCM_RIGHTS.
 *
 * Both ends are the same binary, but the receiver still checks what it
 * got, because a broken peer must not be able to corrupt the other side:
 * the record must be exactly sizeof(sotto__ctl_msg) bytes, of a known type,
 * with a NUL-terminated reason; it may carry at most one fd, and only
 * WORKER_UP carries one (and must).  Every fd received with a record that
 * fails a check is closed before returning -2, so a malformed record never
 * leaks a descriptor.  Received fds are close-on-exec (MSG_CMSG_CLOEXEC).
 *
 * Sends use MSG_NOSIGNAL, so a peer that is gone gives EPIPE rather than
 * killing the sender with SIGPIPE.  Whether a call blocks depends on the
 * socket's own O_NONBLOCK flag.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/server.h"

/* Most fds one record could bring with it; room for more than the one
 * allowed, so that extra fds sent by a broken peer arrive (and are closed
 * here) instead of being dropped with MSG_CTRUNC. */
#define CTL_MAX_FDS 8

/* Whether type is one of enum sotto__ctl_type. */
static int known_type(int32_t type)
{
    switch (type) {
    case SOTTO__CTL_WORKER_UP: case SOTTO__CTL_WORKER_DOWN:
    case SOTTO__CTL_STATE: case SOTTO__CTL_DRAIN:
    case SOTTO__CTL_LISTENING: case SOTTO__CTL_KILL_WORKER:
        return 1;
    default:
        return 0;
    }
}

int sotto__ctl_send(int sock, const sotto__ctl_msg *m, int fd)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct iovec iov = { (void *)m, sizeof *m };
    struct msghdr msg;
    ssize_t n;

    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        struct cmsghdr *cm;
        memset(&control, 0, sizeof control);
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    do
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if ((size_t)n != sizeof *m) {
        /* A SOCK_SEQPACKET send is all or nothing; anything else means
         * the socket is not the kind this channel needs. */
        errno = EPROTO;
        return -1;
    }
    return 0;
}

int sotto__ctl_recv(int sock, sotto__ctl_msg *m, int *fd)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(CTL_MAX_FDS * sizeof(int))];
    } control;
    /* One byte more than a record, so that a longer datagram shows up as
     * a wrong size (MSG_TRUNC says the same). */
    unsigned char buf[sizeof(sotto__ctl_msg) + 1];
    struct iovec iov = { buf, sizeof buf };
    struct msghdr msg;
    int fds[CTL_MAX_FDS], nfds = 0, bad = 0;
    ssize_t n;

    *fd = -1;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    do
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;

    /* Collect every fd that came, whatever else is wrong. */
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm != NULL;
         cm = CMSG_NXTHDR(&msg, cm)) {
        size_t k;
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
            cm->cmsg_len < CMSG_LEN(0)) {
            bad = 1;
            continue;
        }
        k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int f;
            memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof f);
            if (nfds < CTL_MAX_FDS)
                fds[nfds++] = f;
            else
                close(f);   /* cannot happen: the buffer holds CTL_MAX_FDS */
        }
    }
    if (n == 0 && nfds == 0)
        return 0;           /* EOF: the peer closed its end */

    if (bad || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
        (size_t)n != sizeof *m)
        goto fail;
    memcpy(m, buf, sizeof *m);
    if (!known_type(m->type) ||
        memchr(m->reason, '\0', sizeof m->reason) == NULL)
        goto fail;
    if (m->type == SOTTO__CTL_WORKER_UP ? nfds != 1 : nfds != 0)
        goto fail;
    if (nfds == 1)
        *fd = fds[0];
    return 1;

fail:
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    memset(m, 0, sizeof *m);
    return -2;
}
