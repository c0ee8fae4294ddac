/*
 * test_ipc.c - the gateway <-> worker message format (src/server/ipc.c):
 * header checks, every type through a socketpair with the writer and the
 * reader, byte-by-byte and maximal messages, malformed headers refused
 * before their payload, the reader's bounded buffer, and the writer's
 * behaviour on a dead peer (EPIPE, not SIGPIPE) and on a pipe.
 */
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/ipc.h"
#include "server/worker.h"

/* The reader's largest allocation (ipc.c): a 16-byte prefix, an
 * incomplete message and one push of at most a maximal message. */
#define MAX_MSG ((size_t)SOTTO__IPC_HDR_SIZE + SOTTO__IPC_MAX_PAYLOAD)

typedef struct msg {
    int type;
    uint32_t stream, seq;
    size_t len;
} msg;

/* One message of every type, valid by sotto__ipc_check(), with payloads
 * from empty to maximal. */
static const msg all_types[] = {
    { SOTTO__IPC_OPEN, 1, 0, 40 },
    { SOTTO__IPC_AUDIO, 1, 1, 3200 },
    { SOTTO__IPC_AUDIO, 1, 2, 1 },
    { SOTTO__IPC_AUDIO, 0xffffffffu, 0xffffffffu, SOTTO__IPC_MAX_PAYLOAD },
    { SOTTO__IPC_FINISH, 1, 0, 0 },
    { SOTTO__IPC_DROP, 2, 0, 0 },
    { SOTTO__IPC_CUT, 2, 0, 14 },
    { SOTTO__IPC_READY, 0, 0, 60 },
    { SOTTO__IPC_BEAT, 0, 0, 0 },
    { SOTTO__IPC_BEAT, 7, 1234, 0 },
    { SOTTO__IPC_EVENT, 1, 0, 200 },
    { SOTTO__IPC_ACK, 1, 2, 30 },
    { SOTTO__IPC_CLOSED, 1, 0, 25 },
};
#define N_ALL ((int)(sizeof all_types / sizeof all_types[0]))

/* The payload byte i of message k, so that every message is distinct. */
static unsigned char pbyte(int k, size_t i)
{
    return (unsigned char)(i * 31u + (unsigned)k * 7u + (i >> 8));
}

static unsigned char *payload_of(int k)
{
    unsigned char *p = malloc(all_types[k].len + 1);

    for (size_t i = 0; p != NULL && i < all_types[k].len; i++)
        p[i] = pbyte(k, i);
    return p;
}

/* Checks that (h, p) is message k. */
static void check_msg(int k, const sotto__ipc_hdr *h, const unsigned char *p)
{
    const msg *m = &all_types[k];
    size_t bad = 0;

    CHECK_INT_EQ(h->type, m->type);
    CHECK_INT_EQ(h->stream, m->stream);
    CHECK_INT_EQ(h->seq, m->seq);
    CHECK_INT_EQ(h->len, m->len);
    CHECK_INT_EQ(h->flags, 0);
    for (size_t i = 0; i < m->len && i < h->len; i++)
        bad += p[i] != pbyte(k, i);
    CHECK_INT_EQ(bad, 0);
    /* Payloads are aligned for any sample type. */
    CHECK(((uintptr_t)p & 3u) == 0);
}

static void test_names_and_check(void)
{
    sotto__ipc_hdr h;
    char err[128];

    CHECK_STR_EQ(sotto__ipc_type_name(SOTTO__IPC_OPEN), "OPEN");
    CHECK_STR_EQ(sotto__ipc_type_name(SOTTO__IPC_CLOSED), "CLOSED");
    CHECK_STR_EQ(sotto__ipc_type_name(0), "?");
    CHECK_STR_EQ(sotto__ipc_type_name(SOTTO__IPC_CUT), "CUT");
    CHECK_STR_EQ(sotto__ipc_type_name(SOTTO__IPC_JOB_DONE), "JOB_DONE");
    CHECK_STR_EQ(sotto__ipc_type_name(9), "?");
    CHECK_STR_EQ(sotto__ipc_type_name(99), "?");

    for (int k = 0; k < N_ALL; k++) {
        memset(&h, 0, sizeof h);
        h.type = (uint16_t)all_types[k].type;
        h.stream = all_types[k].stream;
        h.len = (uint32_t)all_types[k].len;
        CHECK_INT_EQ(sotto__ipc_check(&h, err, sizeof err), 0);
    }

#define EXPECT_BAD(ty, fl, st, ln, word)                                    \
    do {                                                                    \
        memset(&h, 0, sizeof h);                                            \
        h.type = (ty), h.flags = (fl), h.stream = (st), h.len = (ln);       \
        err[0] = 0;                                                         \
        CHECK_INT_EQ(sotto__ipc_check(&h, err, sizeof err), -1);            \
        CHECK(strstr(err, (word)) != NULL);                                 \
    } while (0)

    EXPECT_BAD(0, 0, 1, 0, "unknown");
    EXPECT_BAD(9, 0, 1, 0, "unknown");
    EXPECT_BAD(25, 0, 1, 0, "unknown");
    EXPECT_BAD(0xffff, 0, 1, 0, "unknown");
    EXPECT_BAD(SOTTO__IPC_AUDIO, 1, 1, 10, "flags");
    EXPECT_BAD(SOTTO__IPC_AUDIO, 0, 1, SOTTO__IPC_MAX_PAYLOAD + 1, "limit");
    EXPECT_BAD(SOTTO__IPC_EVENT, 0, 1, 0xffffffffu, "limit");
    EXPECT_BAD(SOTTO__IPC_BEAT, 0, 0, 1, "BEAT");
    EXPECT_BAD(SOTTO__IPC_READY, 0, 3, 10, "READY");
    EXPECT_BAD(SOTTO__IPC_AUDIO, 0, 0, 10, "stream");
    EXPECT_BAD(SOTTO__IPC_OPEN, 0, 0, 10, "stream");
    EXPECT_BAD(SOTTO__IPC_FINISH, 0, 0, 0, "stream");
    EXPECT_BAD(SOTTO__IPC_DROP, 0, 0, 0, "stream");
    EXPECT_BAD(SOTTO__IPC_CUT, 0, 0, 0, "stream");
    EXPECT_BAD(SOTTO__IPC_ACK, 0, 0, 10, "stream");
    EXPECT_BAD(SOTTO__IPC_CLOSED, 0, 0, 10, "stream");
#undef EXPECT_BAD
}

/* The packed header is the struct's layout in host byte order. */
static void test_pack(void)
{
    unsigned char out[SOTTO__IPC_HDR_SIZE];
    sotto__ipc_hdr h = { .len = 77, .type = SOTTO__IPC_ACK, .flags = 0,
                         .stream = 0x01020304u, .seq = 0xa0b0c0d0u };

    CHECK_INT_EQ(sizeof(sotto__ipc_hdr), SOTTO__IPC_HDR_SIZE);
    sotto__ipc_pack(out, SOTTO__IPC_ACK, 0x01020304u, 0xa0b0c0d0u, 77);
    CHECK(memcmp(out, &h, sizeof out) == 0);
}

/* Every type through a socketpair: a child writes them all with
 * sotto__ipc_write (the maximal one cannot fit in the socket buffer, so
 * the writer must loop over short writes), the parent reads with the
 * reader in 64 KiB reads. */
static void test_roundtrip_socketpair(void)
{
    int sv[2], k = 0, r, status = 0;
    sotto__ipc_reader rd = { 0 };
    unsigned char *buf = malloc(65536);
    pid_t pid;

    CHECK(buf != NULL);
    CHECK_INT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int rc = 0;

        close(sv[0]);
        for (int i = 0; i < N_ALL; i++) {
            unsigned char *p = payload_of(i);
            rc |= p == NULL || sotto__ipc_write(sv[1], all_types[i].type,
                                               all_types[i].stream,
                                               all_types[i].seq, p,
                                               all_types[i].len) != 0;
            free(p);
        }
        _exit(rc);
    }
    close(sv[1]);
    for (;;) {
        sotto__ipc_hdr h;
        const unsigned char *p;
        char err[128];
        ssize_t n = read(sv[0], buf, 65536);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        CHECK_INT_EQ(sotto__ipc_reader_push(&rd, buf, (size_t)n), 0);
        while ((r = sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err)) == 1) {
            CHECK(k < N_ALL);
            if (k < N_ALL)
                check_msg(k, &h, p);
            k++;
        }
        CHECK_INT_EQ(r, 0);
        CHECK(rd.cap <= 16 + 2 * MAX_MSG);
    }
    CHECK_INT_EQ(k, N_ALL);
    CHECK_INT_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(sv[0]);
    sotto__ipc_reader_free(&rd);
    free(buf);
}

/* Serializes every message of all_types but the maximal one into one
 * buffer (as a peer's byte stream). */
static unsigned char *serialize_small(size_t *total)
{
    unsigned char *b = NULL;
    size_t n = 0;

    for (int k = 0; k < N_ALL; k++) {
        unsigned char *p;
        unsigned char *nb;

        if (all_types[k].len > 65536)
            continue;
        nb = realloc(b, n + SOTTO__IPC_HDR_SIZE + all_types[k].len);
        p = payload_of(k);
        if (nb == NULL || p == NULL) {
            free(nb != NULL ? nb : b);
            free(p);
            return NULL;
        }
        b = nb;
        sotto__ipc_pack(b + n, all_types[k].type, all_types[k].stream,
                        all_types[k].seq, all_types[k].len);
        memcpy(b + n + SOTTO__IPC_HDR_SIZE, p, all_types[k].len);
        n += SOTTO__IPC_HDR_SIZE + all_types[k].len;
        free(p);
    }
    *total = n;
    return b;
}

/* One byte at a time: nothing comes out early, every message comes out
 * whole the moment its last byte is in. */
static void test_byte_by_byte(void)
{
    size_t total = 0, end = 0;
    unsigned char *b = serialize_small(&total);
    sotto__ipc_reader rd = { 0 };
    int k = 0;

    CHECK(b != NULL);
    for (size_t i = 0; b != NULL && i < total; i++) {
        sotto__ipc_hdr h;
        const unsigned char *p;
        char err[128];
        int r;

        while (k < N_ALL && all_types[k].len > 65536)
            k++;
        if (k < N_ALL && end <= i)
            end += SOTTO__IPC_HDR_SIZE + all_types[k].len;
        CHECK_INT_EQ(sotto__ipc_reader_push(&rd, b + i, 1), 0);
        r = sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err);
        if (r == 1) {
            CHECK_INT_EQ(i + 1, end);
            CHECK(k < N_ALL);
            if (k < N_ALL)
                check_msg(k, &h, p);
            k++;
            /* A second call finds nothing more in the same bytes. */
            CHECK_INT_EQ(sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err), 0);
        } else {
            CHECK_INT_EQ(r, 0);
            CHECK(i + 1 < end);
        }
    }
    CHECK_INT_EQ(k, N_ALL);
    sotto__ipc_reader_free(&rd);
    free(b);
}

/* Many messages pushed at once come out in order. */
static void test_one_push(void)
{
    size_t total = 0;
    unsigned char *b = serialize_small(&total);
    sotto__ipc_reader rd = { 0 };
    sotto__ipc_hdr h;
    const unsigned char *p;
    char err[128];
    int k = 0, r;

    CHECK(b != NULL);
    CHECK_INT_EQ(sotto__ipc_reader_push(&rd, b, total), 0);
    while ((r = sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err)) == 1) {
        while (k < N_ALL && all_types[k].len > 65536)
            k++;
        if (k < N_ALL)
            check_msg(k, &h, p);
        k++;
    }
    CHECK_INT_EQ(r, 0);
    CHECK_INT_EQ(k, N_ALL);
    sotto__ipc_reader_free(&rd);
    free(b);
}

/* A bad header is refused as soon as its 16 bytes are in, before any
 * payload, with a message; and it stays refused. */
static void bad_header(int type, int flags, uint32_t stream, uint32_t len,
                       const char *word)
{
    unsigned char hdr[SOTTO__IPC_HDR_SIZE];
    sotto__ipc_hdr h = { .len = len, .type = (uint16_t)type,
                         .flags = (uint16_t)flags, .stream = stream, .seq = 1 };
    sotto__ipc_reader rd = { 0 };
    const unsigned char *p;
    char err[128] = "";

    memcpy(hdr, &h, sizeof hdr);
    CHECK_INT_EQ(sotto__ipc_reader_push(&rd, hdr, 15), 0);
    CHECK_INT_EQ(sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err), 0);
    CHECK_INT_EQ(sotto__ipc_reader_push(&rd, hdr + 15, 1), 0);
    CHECK_INT_EQ(sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err), -1);
    CHECK(strstr(err, word) != NULL);
    if (strstr(err, word) == NULL)
        fprintf(stderr, "  message was: %s\n", err);
    CHECK_INT_EQ(sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err), -1);
    sotto__ipc_reader_free(&rd);
}

static void test_bad_headers(void)
{
    bad_header(SOTTO__IPC_AUDIO, 0, 1, SOTTO__IPC_MAX_PAYLOAD + 1, "limit");
    bad_header(SOTTO__IPC_AUDIO, 0, 1, 0xffffffffu, "limit");
    bad_header(42, 0, 1, 10, "unknown");
    bad_header(0, 0, 0, 0, "unknown");
    bad_header(SOTTO__IPC_EVENT, 0x8000, 1, 10, "flags");
    bad_header(SOTTO__IPC_BEAT, 0, 0, 4, "BEAT");
    bad_header(SOTTO__IPC_AUDIO, 0, 0, 4, "stream");

    /* A good message, then a bad header: the good one comes out first. */
    {
        unsigned char b[2 * SOTTO__IPC_HDR_SIZE + 3];
        sotto__ipc_reader rd = { 0 };
        sotto__ipc_hdr h;
        const unsigned char *p;
        char err[128];

        sotto__ipc_pack(b, SOTTO__IPC_AUDIO, 9, 1, 3);
        memcpy(b + SOTTO__IPC_HDR_SIZE, "abc", 3);
        sotto__ipc_pack(b + SOTTO__IPC_HDR_SIZE + 3, SOTTO__IPC_BEAT, 0, 0, 5);
        CHECK_INT_EQ(sotto__ipc_reader_push(&rd, b, sizeof b), 0);
        CHECK_INT_EQ(sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err), 1);
        CHECK_INT_EQ(h.len, 3);
        CHECK(memcmp(p, "abc", 3) == 0);
        CHECK_INT_EQ(sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err), -1);
        sotto__ipc_reader_free(&rd);
    }
}

/* The buffer stays bounded: a maximal message fed in pieces never needs
 * more than the documented allocation, a caller that does not take
 * messages out is refused instead of growing the buffer, and a drained
 * large buffer is given back. */
static void test_bounded(void)
{
    sotto__ipc_reader rd = { 0 };
    sotto__ipc_hdr h;
    const unsigned char *p;
    char err[128];
    unsigned char *big = calloc(1, MAX_MSG + 100);
    size_t piece = 65536, at = 0, max_cap = 0;
    int got = 0;

    CHECK(big != NULL);
    if (big == NULL)
        return;
    sotto__ipc_pack(big, SOTTO__IPC_AUDIO, 3, 1, SOTTO__IPC_MAX_PAYLOAD);
    big[SOTTO__IPC_HDR_SIZE] = 0x5a;
    big[MAX_MSG - 1] = 0xa5;
    /* The next message's header follows at once. */
    sotto__ipc_pack(big + MAX_MSG, SOTTO__IPC_FINISH, 3, 0, 0);
    while (at < MAX_MSG + SOTTO__IPC_HDR_SIZE) {
        size_t n = MAX_MSG + SOTTO__IPC_HDR_SIZE - at < piece
                       ? MAX_MSG + SOTTO__IPC_HDR_SIZE - at : piece;
        int r;

        CHECK_INT_EQ(sotto__ipc_reader_push(&rd, big + at, n), 0);
        at += n;
        if (rd.cap > max_cap)
            max_cap = rd.cap;
        while ((r = sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err)) == 1) {
            if (got == 0) {
                CHECK_INT_EQ(h.len, SOTTO__IPC_MAX_PAYLOAD);
                CHECK_INT_EQ(p[0], 0x5a);
                CHECK_INT_EQ(p[SOTTO__IPC_MAX_PAYLOAD - 1], 0xa5);
            } else {
                CHECK_INT_EQ(h.type, SOTTO__IPC_FINISH);
            }
            got++;
        }
        CHECK_INT_EQ(r, 0);
    }
    CHECK_INT_EQ(got, 2);
    CHECK(max_cap <= 16 + 2 * MAX_MSG);
    /* Drained after a megabyte: the memory is given back at the next
     * call. */
    CHECK_INT_EQ(sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err), 0);
    CHECK(rd.cap <= 64 * 1024);

    /* A caller that pushes a whole maximal message and then more without
     * taking it out is refused. */
    CHECK_INT_EQ(sotto__ipc_reader_push(&rd, big, MAX_MSG), 0);
    errno = 0;
    CHECK_INT_EQ(sotto__ipc_reader_push(&rd, big, 1), -1);
    CHECK_INT_EQ(errno, EMSGSIZE);
    CHECK_INT_EQ(sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err), 1);
    CHECK_INT_EQ(sotto__ipc_reader_push(&rd, big, 1), 0);
    /* More than a maximal message in one push is refused too. */
    sotto__ipc_reader_free(&rd);
    CHECK_INT_EQ(sotto__ipc_reader_push(&rd, big, MAX_MSG + 1), -1);
    sotto__ipc_reader_free(&rd);
    CHECK(rd.buf == NULL && rd.n == 0 && rd.cap == 0);
    /* Free twice and next on an empty reader are harmless. */
    sotto__ipc_reader_free(&rd);
    CHECK_INT_EQ(sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err), 0);
    CHECK_INT_EQ(sotto__ipc_reader_push(&rd, NULL, 0), 0);
    free(big);
}

/* A peer that is gone gives EPIPE, not SIGPIPE (the test would die). */
static void test_dead_peer(void)
{
    int sv[2];

    CHECK_INT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    errno = 0;
    CHECK_INT_EQ(sotto__ipc_write(sv[0], SOTTO__IPC_BEAT, 0, 0, NULL, 0), -1);
    CHECK_INT_EQ(errno, EPIPE);
    close(sv[0]);

    /* Over the limit: refused without writing anything. */
    CHECK_INT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    CHECK_INT_EQ(sotto__ipc_write(sv[0], SOTTO__IPC_AUDIO, 1, 1, "x",
                                  SOTTO__IPC_MAX_PAYLOAD + 1), -1);
    CHECK_INT_EQ(errno, EMSGSIZE);
    close(sv[0]);
    close(sv[1]);
}

/* An fd that is not a socket (a pipe) works through writev. */
static void test_pipe(void)
{
    int pf[2];
    unsigned char buf[64];
    sotto__ipc_reader rd = { 0 };
    sotto__ipc_hdr h;
    const unsigned char *p;
    char err[128];
    ssize_t n;

    CHECK_INT_EQ(pipe(pf), 0);
    CHECK_INT_EQ(sotto__ipc_write(pf[1], SOTTO__IPC_ACK, 5, 6, "{}", 2), 0);
    n = read(pf[0], buf, sizeof buf);
    CHECK_INT_EQ(n, SOTTO__IPC_HDR_SIZE + 2);
    CHECK_INT_EQ(sotto__ipc_reader_push(&rd, buf, n > 0 ? (size_t)n : 0), 0);
    CHECK_INT_EQ(sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err), 1);
    CHECK_INT_EQ(h.type, SOTTO__IPC_ACK);
    CHECK_INT_EQ(h.stream, 5);
    CHECK_INT_EQ(h.seq, 6);
    CHECK(h.len == 2 && memcmp(p, "{}", 2) == 0);
    sotto__ipc_reader_free(&rd);
    close(pf[0]);
    close(pf[1]);
}

/* One OPEN with a single field set to v (JSON text): 0 or -1; on -1 the
 * message must name the field. */
static int open_with(const char *field, const char *v)
{
    static char json[3 * SOTTO__WORKER_MAX_PROMPT + 64 * SOTTO__WORKER_MAX_RESUME_WORDS];
    sotto__worker_open o;
    char err[256];
    int n = snprintf(json, sizeof json, "{\"%s\": %s}", field, v), rc;

    sotto__worker_open_init(&o);
    err[0] = 0;
    rc = sotto__worker_parse_open(json, (size_t)n, &o, err, sizeof err);
    if (rc != 0 && strstr(err, field) == NULL) {
        fprintf(stderr, "test_ipc: the error for %s does not name it: %s\n", field, err);
        rc = -2;
    }
    sotto__worker_open_free(&o);
    return rc;
}

/* Every limit of worker.h on an OPEN field: at it, taken; beyond, refused
 * with a message naming the field (docs/limits.md). */
static void test_open_limits(void)
{
    static char v[3 * SOTTO__WORKER_MAX_PROMPT + 64 * SOTTO__WORKER_MAX_RESUME_WORDS];
    char num[64];
    size_t n;

    v[0] = '"';
    memset(v + 1, 'p', SOTTO__WORKER_MAX_PROMPT);
    memcpy(v + 1 + SOTTO__WORKER_MAX_PROMPT, "\"", 2);
    CHECK_INT_EQ(open_with("prompt", v), 0);
    memcpy(v + 1 + SOTTO__WORKER_MAX_PROMPT, "p\"", 3);   /* one byte more */
    CHECK_INT_EQ(open_with("prompt", v), -1);

    CHECK_INT_EQ(open_with("language", "\"abcdefghijklmno\""), 0);    /* 15 */
    CHECK_INT_EQ(open_with("language", "\"abcdefghijklmnop\""), -1);  /* 16 */

    snprintf(num, sizeof num, "%.0f", SOTTO__WORKER_MAX_TIME);
    CHECK_INT_EQ(open_with("time_offset", num), 0);
    snprintf(num, sizeof num, "%.0f", SOTTO__WORKER_MAX_TIME + 1);
    CHECK_INT_EQ(open_with("time_offset", num), -1);
    CHECK_INT_EQ(open_with("time_offset", "-1"), -1);
    snprintf(num, sizeof num, "%d", SOTTO__WORKER_MAX_SKIP);
    CHECK_INT_EQ(open_with("skip", num), 0);
    snprintf(num, sizeof num, "%d", SOTTO__WORKER_MAX_SKIP + 1);
    CHECK_INT_EQ(open_with("skip", num), -1);
    snprintf(num, sizeof num, "%d", SOTTO__WORKER_MAX_UTTERANCE);
    CHECK_INT_EQ(open_with("first_utterance", num), 0);
    snprintf(num, sizeof num, "%d", SOTTO__WORKER_MAX_UTTERANCE + 1);
    CHECK_INT_EQ(open_with("first_utterance", num), -1);
    CHECK_INT_EQ(open_with("rate", "8000"), 0);
    CHECK_INT_EQ(open_with("rate", "7999"), -1);
    CHECK_INT_EQ(open_with("rate", "192001"), -1);

    /* resume_words: the count, and the length of one word's text. */
    for (int words = SOTTO__WORKER_MAX_RESUME_WORDS; words <= SOTTO__WORKER_MAX_RESUME_WORDS + 1;
         words++) {
        n = 0;
        v[n++] = '[';
        for (int i = 0; i < words; i++)
            n += (size_t)snprintf(v + n, sizeof v - n, "%s{\"text\": \" w\", \"start\": %d, "
                                  "\"end\": %d}", i ? "," : "", i, i);
        snprintf(v + n, sizeof v - n, "]");
        CHECK_INT_EQ(open_with("resume_words", v), words > SOTTO__WORKER_MAX_RESUME_WORDS ? -1 : 0);
    }
    for (int len = SOTTO__WORKER_MAX_WORD; len <= SOTTO__WORKER_MAX_WORD + 1; len++) {
        n = (size_t)snprintf(v, sizeof v, "[{\"text\": \"");
        memset(v + n, 'w', (size_t)len);
        snprintf(v + n + (size_t)len, sizeof v - n - (size_t)len,
                 "\", \"start\": 0, \"end\": 1}]");
        CHECK_INT_EQ(open_with("resume_words", v), len > SOTTO__WORKER_MAX_WORD ? -1 : 0);
    }
}

int main(void)
{
    test_open_limits();
    test_names_and_check();
    test_pack();
    test_roundtrip_socketpair();
    test_byte_by_byte();
    test_one_push();
    test_bad_headers();
    test_bounded();
    test_dead_peer();
    test_pipe();
    return test_main_exit("test_ipc");
}
