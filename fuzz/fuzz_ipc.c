/*
 * fuzz_ipc.c - libFuzzer target for the gateway <-> worker channel: the
 * message reader of src/server/ipc.c and the worker's parser of OPEN
 * payloads (sotto__worker_parse_open in src/server/worker.c).
 *
 * The input is the byte stream a broken or hostile peer could send.  It is
 * pushed into a reader in pieces of pseudo-random sizes (1 byte to 4 KiB,
 * drawn from a hash of the input, so a run is reproducible), and every
 * complete message is taken out after each piece, as the gateway and the
 * worker do.  The payloads that are JSON a peer controls (OPEN, EVENT,
 * ACK) also go through the OPEN parser, which must answer anything with 0
 * or an error message, never crash, leak or read out of bounds.  The
 * target checks the reader's contracts: a message comes out only whole,
 * its header passes sotto__ipc_check(), an error carries a message, and
 * the buffer stays within its bound.
 *
 * worker.c also holds the worker process, which calls the server's log
 * and crash-record functions; fuzz/worker_stubs.c defines those as no-ops,
 * so it links only ipc.o, worker.o, libsotto's objects, cJSON and libopus.
 *
 * Seeds: fuzz/seeds/ipc (fuzz/make_ipc_seeds.py writes them).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/ipc.h"
#include "server/server.h"
#include "server/worker.h"

/* The reader's allocation never exceeds this (ipc.c): a prefix, an
 * incomplete message, and one push. */
#define FUZZ_MAX_CAP (16 + 2 * ((size_t)SOTTO__IPC_HDR_SIZE + SOTTO__IPC_MAX_PAYLOAD))

/* Runs a JSON payload through the worker's OPEN parser. */
static void parse_open(const unsigned char *p, size_t len)
{
    sotto__worker_open o;
    char err[256];

    sotto__worker_open_init(&o);
    err[0] = 0;
    if (sotto__worker_parse_open((const char *)p, len, &o, err, sizeof err) != 0) {
        if (err[0] == 0)
            abort();    /* an error must say why */
        if (o.prompt != NULL || o.resume_words != NULL)
            abort();    /* a failed parse owns nothing */
        return;
    }
    if (o.format < SOTTO__WORKER_S16 || o.format > SOTTO__WORKER_OPUS ||
        o.rate < 8000 || o.rate > 192000 ||
        o.n_resume_words < 0 || o.n_resume_words > SOTTO__WORKER_MAX_RESUME_WORDS ||
        (o.prompt != NULL && strlen(o.prompt) > SOTTO__WORKER_MAX_PROMPT) ||
        strlen(o.language) > SOTTO__WORKER_MAX_LANGUAGE)
        abort();
    for (int i = 0; i < o.n_resume_words; i++)
        if (strlen(o.resume_words[i].text) > SOTTO__WORKER_MAX_WORD ||
            !(o.resume_words[i].start <= o.resume_words[i].end))
            abort();
    sotto__worker_open_free(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sotto__ipc_reader rd = { 0 };
    uint64_t rng = 1469598103934665603ull;
    size_t at = 0;

    /* FNV-1a of the input seeds the piece sizes. */
    for (size_t i = 0; i < size; i++)
        rng = (rng ^ data[i]) * 1099511628211ull;
    while (at < size) {
        sotto__ipc_hdr h;
        const unsigned char *p;
        char err[128];
        size_t piece;
        int r;

        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        piece = (rng & 3) == 0 ? 1 + (size_t)(rng >> 8) % 4096
                               : 1 + (size_t)(rng >> 8) % 64;
        if (piece > size - at)
            piece = size - at;
        if (sotto__ipc_reader_push(&rd, data + at, piece) != 0)
            abort();    /* a draining caller is never refused */
        at += piece;
        if (rd.cap > FUZZ_MAX_CAP)
            abort();
        err[0] = 0;
        while ((r = sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err)) == 1) {
            char e2[128];

            if (sotto__ipc_check(&h, e2, sizeof e2) != 0)
                abort();
            if (h.type == SOTTO__IPC_OPEN || h.type == SOTTO__IPC_EVENT ||
                h.type == SOTTO__IPC_ACK)
                parse_open(p, h.len);
        }
        if (r < 0) {
            if (err[0] == 0)
                abort();
            break;      /* a real peer would be dropped here */
        }
    }
    sotto__ipc_reader_free(&rd);
    return 0;
}
