/*
 * ipc.c - the gateway <-> worker message format (ipc.h): header checks,
 * the incremental reader and the blocking writer.
 *
 * Contracts:
 * - A header is accepted only when sotto__ipc_check() accepts it: a known
 *   type, flags 0, a payload within SOTTO__IPC_MAX_PAYLOAD, a stream id
 *   on every per-stream type (all but READY and BEAT), stream 0 on READY,
 *   and no payload on a BEAT (whose stream field is the stream in
 *   inference, or 0).  The reader checks each header as soon as its 16
 *   bytes are in, before waiting for (or buffering) the payload, so a peer
 *   can never make it allocate more than one maximal message.
 * - The reader's buffer holds only bytes that no returned message covers:
 *   the message handed out by sotto__ipc_reader_next() stays in place
 *   (its payload pointer is valid until the next push or next call) and is
 *   dropped, by moving the rest to the front, at that next call.  The
 *   count of bytes to drop is kept in a small prefix of the allocation
 *   (ipc.h fixes the struct to buf, n and cap), so `n` counts the bytes
 *   after that prefix.  The buffer never holds more than an incomplete
 *   message (less than HDR + MAX_PAYLOAD bytes) plus the latest push, and
 *   a buffer that grew large for a big message is freed once it drains.
 * - Payloads start SOTTO__IPC_HDR_SIZE bytes after a 16-byte-aligned
 *   point, so they are aligned for any sample type.
 * - sotto__ipc_write() sends the header and payload with one sendmsg()
 *   when it can, loops over short writes and EINTR, and uses MSG_NOSIGNAL
 *   so that a peer that has gone away gives EPIPE instead of killing the
 *   process with SIGPIPE.  An fd that is not a socket falls back to
 *   writev() (and then SIGPIPE is the caller's business).
 */
#include "server/ipc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Bytes at the front of the reader's allocation that hold its
 * bookkeeping (the size of the message last handed out).  16 keeps the
 * data, and so every payload, 16-byte aligned. */
#define READER_PREFIX 16
/* One maximal message.  A caller that takes every complete message out
 * after each push never holds this many unreturned bytes before a push,
 * so a push then (or a push of more than this) is refused: the caller is
 * not draining the reader, and the buffer would grow without bound. */
#define READER_BOUND ((size_t)SOTTO__IPC_HDR_SIZE + SOTTO__IPC_MAX_PAYLOAD)
/* Smallest allocation, so small messages do not reallocate all the time. */
#define READER_MIN_CAP 4096
/* A buffer larger than this is freed as soon as it is empty. */
#define READER_KEEP_CAP (64 * 1024)
/* The largest allocation: the prefix, an incomplete message short of
 * READER_BOUND, and one push of at most READER_BOUND. */
#define READER_MAX_CAP (READER_PREFIX + 2 * READER_BOUND)

const char *sotto__ipc_type_name(int type)
{
    switch (type) {
    case SOTTO__IPC_OPEN: return "OPEN";
    case SOTTO__IPC_AUDIO: return "AUDIO";
    case SOTTO__IPC_FINISH: return "FINISH";
    case SOTTO__IPC_DROP: return "DROP";
    case SOTTO__IPC_CUT: return "CUT";
    case SOTTO__IPC_JOB: return "JOB";
    case SOTTO__IPC_JOB_DATA: return "JOB_DATA";
    case SOTTO__IPC_JOB_RUN: return "JOB_RUN";
    case SOTTO__IPC_JOB_SEGMENTS: return "JOB_SEGMENTS";
    case SOTTO__IPC_JOB_DONE: return "JOB_DONE";
    case SOTTO__IPC_JOB_PIECE: return "JOB_PIECE";
    case SOTTO__IPC_JOB_PIECE_DATA: return "JOB_PIECE_DATA";
    case SOTTO__IPC_READY: return "READY";
    case SOTTO__IPC_BEAT: return "BEAT";
    case SOTTO__IPC_EVENT: return "EVENT";
    case SOTTO__IPC_ACK: return "ACK";
    case SOTTO__IPC_CLOSED: return "CLOSED";
    default: return "?";
    }
}

int sotto__ipc_check(const sotto__ipc_hdr *h, char *err, size_t errcap)
{
    const char *name = sotto__ipc_type_name(h->type);

    if (name[0] == '?') {
        snprintf(err, errcap, "unknown message type %u", (unsigned)h->type);
        return -1;
    }
    if (h->flags != 0) {
        snprintf(err, errcap, "%s message with flags 0x%x (must be 0)", name,
                 (unsigned)h->flags);
        return -1;
    }
    if (h->len > SOTTO__IPC_MAX_PAYLOAD) {
        snprintf(err, errcap, "%s message of %lu bytes exceeds the limit of "
                 "%u bytes", name, (unsigned long)h->len,
                 (unsigned)SOTTO__IPC_MAX_PAYLOAD);
        return -1;
    }
    switch (h->type) {
    case SOTTO__IPC_READY:
        if (h->stream != 0) {
            snprintf(err, errcap, "READY message for stream %lu (must be 0)",
                     (unsigned long)h->stream);
            return -1;
        }
        break;
    case SOTTO__IPC_BEAT:
        /* Its stream field names the stream in inference, 0 when idle:
         * any value is valid. */
        if (h->len != 0) {
            snprintf(err, errcap, "BEAT message with a %lu-byte payload "
                     "(must be empty)", (unsigned long)h->len);
            return -1;
        }
        break;
    default:
        if (h->stream == 0) {
            snprintf(err, errcap, "%s message without a stream id", name);
            return -1;
        }
        break;
    }
    return 0;
}

void sotto__ipc_pack(unsigned char out[SOTTO__IPC_HDR_SIZE], int type,
                     uint32_t stream, uint32_t seq, size_t len)
{
    uint32_t l = (uint32_t)len;
    uint16_t t = (uint16_t)type, f = 0;

    /* The layout of sotto__ipc_hdr, field by field, so that padding
     * (there is none today) could never leak into the channel. */
    memcpy(out + 0, &l, 4);
    memcpy(out + 4, &t, 2);
    memcpy(out + 6, &f, 2);
    memcpy(out + 8, &stream, 4);
    memcpy(out + 12, &seq, 4);
}

static void unpack(const unsigned char *in, sotto__ipc_hdr *h)
{
    memcpy(&h->len, in + 0, 4);
    memcpy(&h->type, in + 4, 2);
    memcpy(&h->flags, in + 6, 2);
    memcpy(&h->stream, in + 8, 4);
    memcpy(&h->seq, in + 12, 4);
}

/* ---- the reader -------------------------------------------------------- */

static size_t pending_drop(const sotto__ipc_reader *r)
{
    size_t d = 0;

    if (r->buf != NULL)
        memcpy(&d, r->buf, sizeof d);
    return d;
}

static void set_pending_drop(sotto__ipc_reader *r, size_t d)
{
    memcpy(r->buf, &d, sizeof d);
}

/* Drops the message handed out last, moving what follows to the front. */
static void compact(sotto__ipc_reader *r)
{
    size_t d = pending_drop(r);

    if (d == 0)
        return;
    memmove(r->buf + READER_PREFIX, r->buf + READER_PREFIX + d, r->n - d);
    r->n -= d;
    set_pending_drop(r, 0);
    /* Give the memory of a large message back once the buffer has
     * drained, so that an idle channel does not pin a megabyte. */
    if (r->n == 0 && r->cap > READER_KEEP_CAP)
        sotto__ipc_reader_free(r);
}

int sotto__ipc_reader_push(sotto__ipc_reader *r, const void *data, size_t n)
{
    size_t need, cap;
    unsigned char *nb;

    if (n == 0)
        return 0;
    compact(r);
    if (r->n >= READER_BOUND || n > READER_BOUND) {
        /* The caller holds a complete maximal message it has not taken
         * out, or pushes more than one message's worth at once. */
        errno = EMSGSIZE;
        return -1;
    }
    need = READER_PREFIX + r->n + n;
    if (need > r->cap) {
        cap = r->cap ? r->cap : READER_MIN_CAP;
        while (cap < need)
            cap *= 2;
        if (cap > READER_MAX_CAP)
            cap = READER_MAX_CAP;
        nb = realloc(r->buf, cap);
        if (nb == NULL) {
            errno = ENOMEM;
            return -1;
        }
        if (r->buf == NULL)
            memset(nb, 0, READER_PREFIX);
        r->buf = nb;
        r->cap = cap;
    }
    memcpy(r->buf + READER_PREFIX + r->n, data, n);
    r->n += n;
    return 0;
}

int sotto__ipc_reader_next(sotto__ipc_reader *r, sotto__ipc_hdr *h,
                           const unsigned char **payload,
                           char *err, size_t errcap)
{
    if (r->buf == NULL)
        return 0;
    compact(r);
    if (r->n < SOTTO__IPC_HDR_SIZE)
        return 0;
    unpack(r->buf + READER_PREFIX, h);
    if (sotto__ipc_check(h, err, errcap) != 0)
        return -1;
    if (r->n - SOTTO__IPC_HDR_SIZE < h->len)
        return 0;
    *payload = r->buf + READER_PREFIX + SOTTO__IPC_HDR_SIZE;
    set_pending_drop(r, SOTTO__IPC_HDR_SIZE + (size_t)h->len);
    return 1;
}

void sotto__ipc_reader_free(sotto__ipc_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->n = r->cap = 0;
}

/* ---- the writer -------------------------------------------------------- */

int sotto__ipc_write(int fd, int type, uint32_t stream, uint32_t seq,
                     const void *payload, size_t len)
{
    unsigned char hdr[SOTTO__IPC_HDR_SIZE];
    struct iovec iov[2];
    int niov = 0, use_send = 1;

    if (len > SOTTO__IPC_MAX_PAYLOAD || (len > 0 && payload == NULL)) {
        errno = EMSGSIZE;
        return -1;
    }
    sotto__ipc_pack(hdr, type, stream, seq, len);
    iov[niov].iov_base = hdr;
    iov[niov++].iov_len = sizeof hdr;
    if (len > 0) {
        iov[niov].iov_base = (void *)payload;
        iov[niov++].iov_len = len;
    }
    while (niov > 0) {
        ssize_t w;

        if (use_send) {
            struct msghdr mh;

            memset(&mh, 0, sizeof mh);
            mh.msg_iov = iov;
            mh.msg_iovlen = (size_t)niov;
            w = sendmsg(fd, &mh, MSG_NOSIGNAL);
            if (w < 0 && errno == ENOTSOCK) {
                use_send = 0;
                continue;
            }
        } else {
            w = writev(fd, iov, niov);
        }
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        /* Advance past what was written: whole iovecs, then part of one. */
        while (niov > 0 && (size_t)w >= iov[0].iov_len) {
            w -= (ssize_t)iov[0].iov_len;
            iov[0] = iov[1];
            niov--;
        }
        if (niov > 0) {
            iov[0].iov_base = (unsigned char *)iov[0].iov_base + w;
            iov[0].iov_len -= (size_t)w;
        }
    }
    return 0;
}
