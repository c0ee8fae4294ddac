/*
 * fuzz_opus.c - libFuzzer target for the worker's decoding of a stream's
 * AUDIO payloads (sotto__worker_convert in src/server/worker.c): raw Opus
 * packets, one per payload, decoded by libopus at 16 kHz mono, and s16le
 * or f32le PCM with samples split across payloads.  These bytes come from
 * a client unchanged (the gateway only frames them), so a hostile packet
 * reaches this code first.
 *
 * Input: byte 0 picks the format (s16, f32, opus); the rest is a sequence
 * of payloads, each a 2-byte little-endian length (cut to what is left)
 * and that many bytes, fed in order to one stream's converter, as a
 * worker feeds a stream's chunks.  The target checks the converter's
 * contracts: an error carries a message and produces no samples; Opus
 * never yields more than 120 ms; PCM yields exactly the whole samples of
 * the carried bytes and the payload, and carries the rest (fewer than one
 * sample).
 *
 * Seeds: fuzz/seeds/opus (fuzz/make_opus_seeds.c writes them: real speech
 * encoded by libopus at several bitrates, frame sizes and modes, and the
 * packets a hostile client sends: truncated, illegal TOC bytes, code-3
 * frame counts that lie, packets of other codecs, and empty payloads).
 */
#include <opus.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int formats[3] = { SOTTO__WORKER_S16, SOTTO__WORKER_F32,
                                    SOTTO__WORKER_OPUS };
    sotto__worker_conv cv;
    unsigned char *buf = NULL;
    size_t cap = 0, at = 1;
    int oerr;

    if (size < 1)
        return 0;
    memset(&cv, 0, sizeof cv);
    cv.format = formats[data[0] % 3];
    if (cv.format == SOTTO__WORKER_OPUS &&
        (cv.opus = opus_decoder_create(SOTTO_SAMPLE_RATE, 1, &oerr)) == NULL)
        abort();    /* only out of memory could fail here */
    while (at + 2 <= size) {
        size_t len = (size_t)data[at] | (size_t)data[at + 1] << 8, n = 12345;
        size_t width = cv.format == SOTTO__WORKER_S16 ? 2 : 4;
        size_t before = (size_t)cv.n_carry;
        char err[128];
        int rc;

        at += 2;
        if (len > size - at)
            len = size - at;
        err[0] = 0;
        rc = sotto__worker_convert(&cv, data + at, len, &buf, &cap, &n, err,
                                   sizeof err);
        if (rc != 0) {
            if (err[0] == 0 || n != 0)
                abort();    /* an error says why and yields nothing */
        } else if (cv.format == SOTTO__WORKER_OPUS) {
            if (n > SOTTO__WORKER_OPUS_MAX_SAMPLES || n * sizeof(float) > cap)
                abort();
        } else {
            if (n != (before + len) / width ||
                (size_t)cv.n_carry != (before + len) % width ||
                n * width > cap)
                abort();
        }
        at += len;
    }
    if (cv.opus != NULL)
        opus_decoder_destroy(cv.opus);
    free(buf);
    return 0;
}
