/*
 * fuzz_vad.c - libFuzzer target for the Silero VAD loader (safetensors
 * parsing and weight checks) and for the speech segmentation.
 *
 * Contract: each input is parsed by sotto__safetensors_parse(); success
 * must give tensors whose data lies inside the input and whose byte count
 * is the element count times the item size.  The input is then loaded by
 * sotto__vad_model_load_memory(), which must either fail with a negative
 * code other than SOTTO_EINTERNAL, a NUL-terminated non-empty message and
 * no model, or give a model that runs: two steps on a fixed frame each
 * return 0 with a probability in [0, 1], or SOTTO_EMODEL (the network
 * overflowed on weights that are finite but absurd).  Finally the bytes
 * are read as a segmentation case (options from the first 16 bytes, one
 * probability per remaining byte) for sotto__vad_segments_from_probs(),
 * which must succeed or refuse the options with SOTTO_EINVAL, and give
 * regions that lie inside the audio.  Crashes, sanitizer reports, leaks
 * and failed invariants (abort) are bugs.
 *
 * Seeds: fuzz/seeds/vad/, written by fuzz/make_vad_seeds.py; the largest
 * is the real 1.2 MB weights file, from which libFuzzer takes its max_len:
 *   ./build-fuzz/fuzz_vad -rss_limit_mb=4096 /tmp/corpus-vad fuzz/seeds/vad
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/safetensors.h"
#include "engine/vad.h"
#include "sotto.h"

static volatile unsigned sink;

static void require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_vad: invariant failed: %s\n", what);
        abort();
    }
}

static void fuzz_parse(const uint8_t *data, size_t size)
{
    sotto__safetensors st;
    char err[256];
    int rc;

    memset(err, 0x55, sizeof err);
    rc = sotto__safetensors_parse(data, size, &st, err, sizeof err);
    if (rc != 0) {
        require(rc < 0 && rc > SOTTO_EINTERNAL, "parse error code");
        require(memchr(err, 0, sizeof err) != NULL && err[0] != 0,
                "parse error message");
        require(st.n == 0 && st.tensors == NULL, "nothing left after a failure");
        return;
    }
    for (int i = 0; i < st.n; i++) {
        const sotto__st_tensor *t = &st.tensors[i];
        unsigned long long count = 1;
        require(t->name != NULL && t->rank >= 0 &&
                t->rank <= SOTTO__SAFETENSORS_MAX_RANK, "tensor header");
        require(t->data >= data && t->data <= data + size &&
                t->nbytes <= (size_t)(data + size - t->data),
                "tensor data inside the input");
        for (int d = 0; d < t->rank; d++) {
            require(t->shape[d] >= 0, "dimension sign");
            count = t->shape[d] == 0 ? 0 : count * (unsigned long long)t->shape[d];
        }
        require(count == 0 || t->nbytes % count == 0, "byte count");
        require(sotto__safetensors_find(&st, t->name) == t, "unique names");
        if (t->nbytes > 0)
            sink += t->data[0] + t->data[t->nbytes - 1];
    }
    sotto__safetensors_free(&st);
}

static void fuzz_load(const uint8_t *data, size_t size)
{
    sotto__vad_model *m = (sotto__vad_model *)&m;
    sotto__vad *v = NULL;
    float frame[SOTTO__VAD_FRAME], p;
    char err[256];
    int rc;

    memset(err, 0x55, sizeof err);
    rc = sotto__vad_model_load_memory(data, size, &m, err, sizeof err);
    if (rc != 0) {
        require(rc < 0 && rc > SOTTO_EINTERNAL, "load error code");
        require(memchr(err, 0, sizeof err) != NULL && err[0] != 0,
                "load error message");
        require(m == NULL, "no model after a failure");
        return;
    }
    require(m != NULL, "a model after success");
    require(sotto__vad_create(m, &v) == 0 && v != NULL, "stream created");
    for (int i = 0; i < SOTTO__VAD_FRAME; i++)
        frame[i] = 0.25f * sinf(0.07f * (float)i);
    for (int k = 0; k < 2; k++) {
        p = -1.0f;
        rc = sotto__vad_step(v, frame, &p);
        require(rc == 0 || rc == SOTTO_EMODEL, "step result");
        require(p >= 0.0f && p <= 1.0f, "probability in [0, 1]");
    }
    sotto__vad_destroy(v);
    sotto__vad_model_free(m);
}

static void fuzz_segments(const uint8_t *data, size_t size)
{
    sotto__vad_options o;
    sotto__speech *seg = NULL;
    float probs[4096];
    size_t nf, n_samples, n_out = 0;
    int rc;

    if (size < 16)
        return;
    o.threshold = (float)data[0] / 255.0f;
    o.neg_threshold = data[1] < 128 ? -1.0f : (float)(data[1] - 128) / 127.0f;
    o.min_speech_ms = data[2] * 8;
    o.min_silence_ms = (data[3] | data[4] << 8) % 5000;
    o.speech_pad_ms = data[5] * 4;
    o.max_speech_s = data[6] < 128 ? 0.0f : (float)(data[6] - 128) / 8.0f;
    nf = size - 16 < sizeof probs / sizeof probs[0]
             ? size - 16 : sizeof probs / sizeof probs[0];
    for (size_t i = 0; i < nf; i++)
        probs[i] = (float)data[16 + i] / 255.0f;
    /* faster-whisper's frame count for n samples is n / 512 + 1. */
    n_samples = nf == 0 ? 0 : (nf - 1) * SOTTO__VAD_FRAME + data[7] * 2;
    rc = sotto__vad_segments_from_probs(probs, nf, n_samples, &o, &seg, &n_out);
    require(rc == 0, "segmentation of valid options");
    require((n_out == 0) == (seg == NULL), "segment list");
    for (size_t i = 0; i < n_out; i++)
        require(seg[i].start <= n_samples && seg[i].end <= n_samples,
                "segment inside the audio");
    free(seg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_parse(data, size);
    fuzz_load(data, size);
    fuzz_segments(data, size);
    return 0;
}
