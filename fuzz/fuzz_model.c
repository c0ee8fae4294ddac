/*
 * fuzz_model.c - libFuzzer target for the model.bin and config.json parsers.
 *
 * Contract: each input is parsed as model.bin by sotto__model_parse_bin()
 * on a zeroed struct sotto_model, then released.  A parse must either fail
 * with a negative code, a NUL-terminated non-empty message and nothing left
 * allocated, or succeed with plausible hyper-parameters and weights that
 * all lie inside the input (each matrix: rows x cols items of its dtype)
 * and vectors that all lie inside the float32 block.  An input that starts
 * with '{' is also parsed as config.json by sotto__model_parse_config() for
 * a model of 4 text layers, 6 heads and 51864 tokens (tiny.en); success
 * must give alignment heads and suppressed ids within those bounds.
 * Crashes, sanitizer reports, leaks, failed invariants (abort) and
 * SOTTO_EINTERNAL (which sotto.h defines as a bug) are bugs.
 *
 * Seeds: fuzz/seeds/model/, written by fuzz/make_model_seeds.py.  A valid
 * model.bin needs a 51864-token embedding, so the largest seed is about
 * 850 KB: run with -max_len=1000000, e.g.
 *   ./build-fuzz/fuzz_model -max_len=1000000 -rss_limit_mb=4096 \
 *       /tmp/corpus-model fuzz/seeds/model
 * Set FUZZ_MODEL_VERBOSE=1 to print each input's result (for triage).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"

static const uint8_t *in_lo, *in_hi;     /* the input being parsed */
static const float *small_lo, *small_hi; /* the float32 block */
static volatile float sink;

static void require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_model: invariant failed: %s\n", what);
        abort();
    }
}

/* A matrix must have the expected shape and lie inside the input; its
 * first and last bytes are read so that ASan sees any overrun. */
static void check_weight(const sotto__weight *w, int rows, int cols)
{
    size_t isz, n;
    const uint8_t *p = w->data;

    require(w->dtype == SOTTO__DT_F16 || w->dtype == SOTTO__DT_F32,
            "weight dtype");
    require(w->rows == rows && w->cols == cols, "weight shape");
    isz = w->dtype == SOTTO__DT_F16 ? 2 : 4;
    n = (size_t)rows * (size_t)cols * isz;
    require(p != NULL && p >= in_lo && p <= in_hi &&
            n <= (size_t)(in_hi - p), "weight inside the input");
    if (n > 0)
        sink += (float)(p[0] + p[n - 1]);
}

/* A vector of n floats must lie inside the float32 block. */
static void check_floats(const float *v, size_t n)
{
    require(v != NULL && v >= small_lo && v <= small_hi &&
            n <= (size_t)(small_hi - v), "vector inside the float block");
    if (n > 0)
        sink += v[0] + v[n - 1];
}

static void check_model(const struct sotto_model *m)
{
    const int d = m->d, f = m->n_ffn;

    require(m->n_mels == 80 || m->n_mels == 128, "n_mels");
    require(d > 0 && m->n_heads > 0 && d % m->n_heads == 0, "d and heads");
    require(m->n_vocab >= 51864 && f > 0 && m->n_audio_ctx > 0 &&
            m->n_text_ctx >= 8, "dimensions");
    require(m->n_audio_layers >= 1 && m->n_audio_layers <= 128 &&
            m->n_text_layers >= 1 && m->n_text_layers <= 128, "layers");
    require(m->dtype == SOTTO__DT_F16 || m->dtype == SOTTO__DT_F32, "dtype");
    require(m->enc != NULL && m->dec != NULL && m->small != NULL,
            "allocations");
    small_lo = m->small;
    small_hi = m->small + m->small_len;

    check_weight(&m->conv1, d, m->n_mels * 3);
    check_floats(m->conv1_b, (size_t)d);
    check_weight(&m->conv2, d, d * 3);
    check_floats(m->conv2_b, (size_t)d);
    check_floats(m->enc_pos, (size_t)m->n_audio_ctx * (size_t)d);
    for (int i = 0; i < m->n_audio_layers; i++) {
        const sotto__enc_layer *l = &m->enc[i];
        check_floats(l->attn_ln_g, (size_t)d);
        check_floats(l->attn_ln_b, (size_t)d);
        check_weight(&l->attn_qkv, 3 * d, d);
        check_floats(l->attn_qkv_b, (size_t)3 * (size_t)d);
        check_weight(&l->attn_out, d, d);
        check_floats(l->attn_out_b, (size_t)d);
        check_floats(l->ffn_ln_g, (size_t)d);
        check_floats(l->ffn_ln_b, (size_t)d);
        check_weight(&l->ffn_up, f, d);
        check_floats(l->ffn_up_b, (size_t)f);
        check_weight(&l->ffn_down, d, f);
        check_floats(l->ffn_down_b, (size_t)d);
    }
    check_floats(m->enc_ln_g, (size_t)d);
    check_floats(m->enc_ln_b, (size_t)d);

    check_weight(&m->tok_emb, m->n_vocab, d);
    check_floats(m->dec_pos, (size_t)m->n_text_ctx * (size_t)d);
    for (int i = 0; i < m->n_text_layers; i++) {
        const sotto__dec_layer *l = &m->dec[i];
        check_floats(l->self_ln_g, (size_t)d);
        check_floats(l->self_ln_b, (size_t)d);
        check_weight(&l->self_qkv, 3 * d, d);
        check_floats(l->self_qkv_b, (size_t)3 * (size_t)d);
        check_weight(&l->self_out, d, d);
        check_floats(l->self_out_b, (size_t)d);
        check_floats(l->cross_ln_g, (size_t)d);
        check_floats(l->cross_ln_b, (size_t)d);
        check_weight(&l->cross_q, d, d);
        check_floats(l->cross_q_b, (size_t)d);
        check_weight(&l->cross_kv, 2 * d, d);
        check_floats(l->cross_kv_b, (size_t)2 * (size_t)d);
        check_weight(&l->cross_out, d, d);
        check_floats(l->cross_out_b, (size_t)d);
        check_floats(l->ffn_ln_g, (size_t)d);
        check_floats(l->ffn_ln_b, (size_t)d);
        check_weight(&l->ffn_up, f, d);
        check_floats(l->ffn_up_b, (size_t)f);
        check_weight(&l->ffn_down, d, f);
        check_floats(l->ffn_down_b, (size_t)d);
    }
    check_floats(m->dec_ln_g, (size_t)d);
    check_floats(m->dec_ln_b, (size_t)d);
}

static void check_error(int rc, const char *err, size_t cap)
{
    /* SOTTO_EINTERNAL means "a bug in sotto" (sotto.h), never bad input. */
    require(rc < 0 && rc > SOTTO_EINTERNAL, "error code");
    require(memchr(err, 0, cap) != NULL && err[0] != 0, "error message");
}

static int verbose(void)
{
    static int v = -1;
    if (v < 0) {
        const char *s = getenv("FUZZ_MODEL_VERBOSE");
        v = s != NULL && *s != 0 && *s != '0';
    }
    return v;
}

static void fuzz_bin(const uint8_t *data, size_t size)
{
    struct sotto_model *m = calloc(1, sizeof *m);
    char err[256];
    int rc;

    if (m == NULL)
        return;
    memset(err, 0x55, sizeof err);
    in_lo = data;
    in_hi = data + size;
    rc = sotto__model_parse_bin(m, data, size, err, sizeof err);
    if (verbose())
        fprintf(stderr, "model.bin: rc %d%s%s\n", rc, rc ? ": " : "",
                rc ? err : "");
    if (rc == 0) {
        check_model(m);
    } else {
        check_error(rc, err, sizeof err);
        require(m->small == NULL && m->enc == NULL && m->dec == NULL,
                "nothing left allocated after a failure");
    }
    sotto__model_release(m);
    free(m);
}

static void fuzz_config(const uint8_t *data, size_t size)
{
    struct sotto_model *m = calloc(1, sizeof *m);
    char *json = malloc(size + 1);
    char err[256];
    int rc;

    if (m == NULL || json == NULL)
        goto done;
    memcpy(json, data, size);
    json[size] = 0;
    m->n_text_layers = 4;
    m->n_heads = 6;
    m->n_vocab = 51864;
    memset(err, 0x55, sizeof err);
    rc = sotto__model_parse_config(m, json, err, sizeof err);
    if (verbose())
        fprintf(stderr, "config.json: rc %d%s%s\n", rc, rc ? ": " : "",
                rc ? err : "");
    if (rc != 0) {
        check_error(rc, err, sizeof err);
        goto done;
    }
    require(m->n_align_heads >= 1 &&
            m->n_align_heads <= SOTTO__MAX_ALIGNMENT_HEADS,
            "alignment head count");
    for (int i = 0; i < m->n_align_heads; i++)
        require(m->align_heads[i][0] >= 0 && m->align_heads[i][0] < 4 &&
                m->align_heads[i][1] >= 0 && m->align_heads[i][1] < 6,
                "alignment head in range");
    require(m->n_suppress >= 0 && m->n_suppress <= SOTTO__MAX_SUPPRESS_IDS &&
            m->n_suppress_begin >= 0 &&
            m->n_suppress_begin <= SOTTO__MAX_SUPPRESS_IDS, "suppress count");
    for (int i = 0; i < m->n_suppress; i++)
        require(m->suppress[i] >= 0 && m->suppress[i] < 51864,
                "suppressed id in range");
    for (int i = 0; i < m->n_suppress_begin; i++)
        require(m->suppress_begin[i] >= 0 && m->suppress_begin[i] < 51864,
                "suppressed-at-begin id in range");
done:
    if (m != NULL)
        sotto__model_release(m);
    free(m);
    free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_bin(data, size);
    if (size > 0 && data[0] == '{')
        fuzz_config(data, size);
    return 0;
}
