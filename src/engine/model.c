/*
 * model.c - loading a CTranslate2 Whisper model folder.
 *
 * model.bin (format version 6, docs/model-format.md) is mmap'd read-only
 * and parsed in place: a header, then variable records (name, rank, shape,
 * dtype code, byte count, payload), then an alias table.  Every length,
 * shape and offset is checked against the file size and against the names
 * and shapes a Whisper model must have, so a truncated, corrupt or foreign
 * file is refused with a message naming the problem instead of crashing.
 * config.json is read with cJSON; the vocabulary by tokenizer.c.
 *
 * The large weights stay in the mapping in their stored dtype; only
 * vectors and position encodings are widened into one float32 block.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "common/common.h"
#include "engine/gemm.h"
#include "engine/model.h"

/* The only model.bin layout version sotto reads. */
#define SOTTO__BIN_VERSION 6
/* Highest WhisperSpec revision sotto knows. */
#define SOTTO__SPEC_REVISION_MAX 3
/* Limits on what a record may declare, far above any Whisper model. */
#define SOTTO__MAX_VARIABLES 100000
#define SOTTO__MAX_ALIASES 100000
#define SOTTO__MAX_RANK 8
#define SOTTO__MAX_LAYERS 128
#define SOTTO__MAX_DIM 65536
/* Largest config.json read, in bytes. */
#define SOTTO__MAX_CONFIG_BYTES (16u << 20)

typedef struct variable {
    const char *name;       /* NUL-terminated, inside the buffer */
    int rank;
    uint32_t dims[SOTTO__MAX_RANK];
    int dtype;
    const unsigned char *data;
    size_t nbytes;
    size_t count;           /* product of dims */
} variable;

typedef struct alias {
    const char *name, *target;
} alias;

typedef struct parser {
    const unsigned char *buf;
    size_t len, off;
    char *err;
    size_t errcap;
    variable *vars;
    uint32_t n_vars;
    alias *aliases;
    uint32_t n_aliases;
    float *small_next, *small_end;
} parser;

static int rd_bytes(parser *p, size_t n, const unsigned char **out,
                    const char *what)
{
    if (n > p->len - p->off)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "model.bin is truncated: %s needs %zu bytes at "
                           "offset %zu but the file has %zu",
                           what, n, p->off, p->len);
    *out = p->buf + p->off;
    p->off += n;
    return 0;
}

static int rd_u32(parser *p, uint32_t *v, const char *what)
{
    const unsigned char *b = NULL;
    int rc = rd_bytes(p, 4, &b, what);
    if (rc == 0)
        *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
             (uint32_t)b[3] << 24;
    return rc;
}

static int rd_u8(parser *p, uint8_t *v, const char *what)
{
    const unsigned char *b = NULL;
    int rc = rd_bytes(p, 1, &b, what);
    if (rc == 0)
        *v = b[0];
    return rc;
}

/* A string is a uint16 length that counts a final NUL, then the bytes. */
static int rd_str(parser *p, const char **s, const char *what)
{
    const unsigned char *b = NULL;
    uint16_t n;
    int rc;

    if ((rc = rd_bytes(p, 2, &b, what)) != 0)
        return rc;
    n = (uint16_t)(b[0] | b[1] << 8);
    if (n < 2)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "model.bin is corrupt: empty string for %s at "
                           "offset %zu", what, p->off - 2);
    if ((rc = rd_bytes(p, n, &b, what)) != 0)
        return rc;
    if (b[n - 1] != 0 || memchr(b, 0, n - 1) != NULL)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "model.bin is corrupt: %s at offset %zu is not a "
                           "NUL-terminated string", what, p->off - n);
    *s = (const char *)b;
    return 0;
}

static size_t item_size(int dtype)
{
    switch (dtype) {
    case SOTTO__DT_F32: case SOTTO__DT_I32: return 4;
    case SOTTO__DT_I16: case SOTTO__DT_F16: case SOTTO__DT_BF16: return 2;
    case SOTTO__DT_I8: return 1;
    default: return 0;
    }
}

static const char *dtype_name(int dtype)
{
    switch (dtype) {
    case SOTTO__DT_F32: return "float32";
    case SOTTO__DT_I8: return "int8";
    case SOTTO__DT_I16: return "int16";
    case SOTTO__DT_I32: return "int32";
    case SOTTO__DT_F16: return "float16";
    case SOTTO__DT_BF16: return "bfloat16";
    default: return "unknown";
    }
}

static int parse_variable(parser *p, variable *v, uint32_t index)
{
    uint8_t rank, dt;
    uint32_t nbytes;
    size_t count = 1, isz;
    int rc;

    if ((rc = rd_str(p, &v->name, "a variable name")) != 0)
        return rc;
    if ((rc = rd_u8(p, &rank, "a variable rank")) != 0)
        return rc;
    if (rank > SOTTO__MAX_RANK)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "model.bin is corrupt: variable %s has rank %u "
                           "(at most %d)", v->name, rank, SOTTO__MAX_RANK);
    v->rank = rank;
    for (int i = 0; i < rank; i++) {
        if ((rc = rd_u32(p, &v->dims[i], "a dimension")) != 0)
            return rc;
        if (v->dims[i] > SOTTO__MAX_DIM * 16u)
            return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                               "model.bin is corrupt: variable %s has "
                               "dimension %u", v->name, v->dims[i]);
        count *= v->dims[i];
        if (count > p->len)
            return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                               "model.bin is corrupt: variable %s declares "
                               "more elements than the file holds", v->name);
    }
    if ((rc = rd_u8(p, &dt, "a dtype code")) != 0)
        return rc;
    isz = item_size(dt);
    if (isz == 0)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "model.bin is corrupt: variable %s has unknown "
                           "dtype code %u", v->name, dt);
    v->dtype = dt;
    if ((rc = rd_u32(p, &nbytes, "a byte count")) != 0)
        return rc;
    if ((size_t)nbytes != count * isz)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "model.bin is corrupt: variable %s has %u bytes "
                           "but its shape and dtype need %zu",
                           v->name, nbytes, count * isz);
    if ((rc = rd_bytes(p, nbytes, &v->data, v->name)) != 0)
        return rc;
    v->nbytes = nbytes;
    v->count = count;
    (void)index;
    return 0;
}

static const variable *find_var(const parser *p, const char *name)
{
    for (uint32_t i = 0; i < p->n_vars; i++)
        if (strcmp(p->vars[i].name, name) == 0)
            return &p->vars[i];
    for (uint32_t i = 0; i < p->n_aliases; i++) {
        if (strcmp(p->aliases[i].name, name) == 0) {
            for (uint32_t j = 0; j < p->n_vars; j++)
                if (strcmp(p->vars[j].name, p->aliases[i].target) == 0)
                    return &p->vars[j];
            return NULL;
        }
    }
    return NULL;
}

static int missing(parser *p, const char *name)
{
    return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                       "model.bin has no variable %s: not a Whisper model, or "
                       "a corrupt one", name);
}

static int check_float_dtype(parser *p, const variable *v)
{
    if (v->dtype == SOTTO__DT_F16 || v->dtype == SOTTO__DT_F32)
        return 0;
    if (v->dtype == SOTTO__DT_I8 || v->dtype == SOTTO__DT_I16 ||
        v->dtype == SOTTO__DT_BF16)
        return sotto__errf(p->err, p->errcap, SOTTO_EUNSUPPORTED,
                           "%s weights are not supported yet (variable %s); "
                           "use a float16 or float32 conversion of the model",
                           dtype_name(v->dtype), v->name);
    return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                       "variable %s has dtype %s where a float is expected",
                       v->name, dtype_name(v->dtype));
}

/* Finds `name` and checks its shape is [rows, cols] (conv kernels
 * [rows, a, b] with a * b == cols when rank is 3). */
static int get_matrix(parser *p, const char *name, int rows, int cols,
                      sotto__weight *w)
{
    const variable *v = find_var(p, name);
    int rc;
    size_t c;

    if (v == NULL)
        return missing(p, name);
    if ((rc = check_float_dtype(p, v)) != 0)
        return rc;
    c = v->rank == 2 ? v->dims[1]
      : v->rank == 3 ? (size_t)v->dims[1] * v->dims[2] : 0;
    if ((v->rank != 2 && v->rank != 3) || v->dims[0] != (uint32_t)rows ||
        c != (size_t)cols)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "variable %s has shape [%u, %u%s] but [%d, %d] was "
                           "expected", name, v->rank > 0 ? v->dims[0] : 0,
                           v->rank > 1 ? v->dims[1] : 0,
                           v->rank > 2 ? ", ..." : "", rows, cols);
    w->data = v->data;
    w->dtype = v->dtype;
    w->rows = rows;
    w->cols = cols;
    return 0;
}

/* Finds a float tensor of exactly `count` elements with the expected rank
 * and widens it into the small block. */
static int get_floats(parser *p, const char *name, int rank, size_t count,
                      const float **out)
{
    const variable *v = find_var(p, name);
    int rc;

    if (v == NULL)
        return missing(p, name);
    if ((rc = check_float_dtype(p, v)) != 0)
        return rc;
    if (v->rank != rank || v->count != count)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "variable %s has rank %d and %zu elements but rank "
                           "%d with %zu was expected", name, v->rank,
                           v->count, rank, count);
    if (count > (size_t)(p->small_end - p->small_next))
        return sotto__errf(p->err, p->errcap, SOTTO_EINTERNAL,
                           "small-tensor block too small for %s", name);
    sotto__to_f32(v->data, v->dtype, p->small_next, count);
    *out = p->small_next;
    p->small_next += count;
    return 0;
}

static int get_int_scalar(parser *p, const char *name, long *out)
{
    const variable *v = find_var(p, name);

    if (v == NULL)
        return missing(p, name);
    if (v->rank != 0)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "variable %s should be a scalar", name);
    switch (v->dtype) {
    case SOTTO__DT_I8: *out = (int8_t)v->data[0]; break;
    case SOTTO__DT_I16: *out = (int16_t)(v->data[0] | v->data[1] << 8); break;
    case SOTTO__DT_I32: {
        uint32_t u = (uint32_t)v->data[0] | (uint32_t)v->data[1] << 8 |
                     (uint32_t)v->data[2] << 16 | (uint32_t)v->data[3] << 24;
        *out = (int32_t)u;
        break;
    }
    default:
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "variable %s should be an integer scalar", name);
    }
    return 0;
}

#define NAME(buf, ...) snprintf(buf, sizeof buf, __VA_ARGS__)

static int count_layers(parser *p, const char *side)
{
    char name[256];
    int n = 0;

    for (;;) {
        NAME(name, "%s/layer_%d/self_attention/linear_0/weight", side, n);
        if (find_var(p, name) == NULL || n >= SOTTO__MAX_LAYERS)
            return n;
        n++;
    }
}

/* Loads the attention/FFN tensors shared in shape by encoder and decoder
 * layers under `pre` ("encoder/layer_3"). */
static int get_self_attention(parser *p, const char *pre, int d,
                              const float **ln_g, const float **ln_b,
                              sotto__weight *qkv, const float **qkv_b,
                              sotto__weight *out, const float **out_b)
{
    char n[256];
    int rc;

    NAME(n, "%s/self_attention/layer_norm/gamma", pre);
    if ((rc = get_floats(p, n, 1, (size_t)d, ln_g)) != 0) return rc;
    NAME(n, "%s/self_attention/layer_norm/beta", pre);
    if ((rc = get_floats(p, n, 1, (size_t)d, ln_b)) != 0) return rc;
    NAME(n, "%s/self_attention/linear_0/weight", pre);
    if ((rc = get_matrix(p, n, 3 * d, d, qkv)) != 0) return rc;
    NAME(n, "%s/self_attention/linear_0/bias", pre);
    if ((rc = get_floats(p, n, 1, (size_t)3 * d, qkv_b)) != 0) return rc;
    NAME(n, "%s/self_attention/linear_1/weight", pre);
    if ((rc = get_matrix(p, n, d, d, out)) != 0) return rc;
    NAME(n, "%s/self_attention/linear_1/bias", pre);
    return get_floats(p, n, 1, (size_t)d, out_b);
}

static int get_ffn(parser *p, const char *pre, int d, int f,
                   const float **ln_g, const float **ln_b, sotto__weight *up,
                   const float **up_b, sotto__weight *down,
                   const float **down_b)
{
    char n[256];
    int rc;

    NAME(n, "%s/ffn/layer_norm/gamma", pre);
    if ((rc = get_floats(p, n, 1, (size_t)d, ln_g)) != 0) return rc;
    NAME(n, "%s/ffn/layer_norm/beta", pre);
    if ((rc = get_floats(p, n, 1, (size_t)d, ln_b)) != 0) return rc;
    NAME(n, "%s/ffn/linear_0/weight", pre);
    if ((rc = get_matrix(p, n, f, d, up)) != 0) return rc;
    NAME(n, "%s/ffn/linear_0/bias", pre);
    if ((rc = get_floats(p, n, 1, (size_t)f, up_b)) != 0) return rc;
    NAME(n, "%s/ffn/linear_1/weight", pre);
    if ((rc = get_matrix(p, n, d, f, down)) != 0) return rc;
    NAME(n, "%s/ffn/linear_1/bias", pre);
    return get_floats(p, n, 1, (size_t)d, down_b);
}

static int load_encoder(parser *p, struct sotto_model *m)
{
    const int d = m->d;
    char pre[64], n[256];
    int rc;

    if ((rc = get_matrix(p, "encoder/conv1/weight", d, m->n_mels * 3, &m->conv1)))
        return rc;
    if ((rc = get_floats(p, "encoder/conv1/bias", 1, (size_t)d, &m->conv1_b)))
        return rc;
    if ((rc = get_matrix(p, "encoder/conv2/weight", d, d * 3, &m->conv2)))
        return rc;
    if ((rc = get_floats(p, "encoder/conv2/bias", 1, (size_t)d, &m->conv2_b)))
        return rc;
    if ((rc = get_floats(p, "encoder/position_encodings/encodings", 2,
                         (size_t)m->n_audio_ctx * d, &m->enc_pos)))
        return rc;
    for (int i = 0; i < m->n_audio_layers; i++) {
        sotto__enc_layer *l = &m->enc[i];
        NAME(pre, "encoder/layer_%d", i);
        if ((rc = get_self_attention(p, pre, d, &l->attn_ln_g, &l->attn_ln_b,
                                     &l->attn_qkv, &l->attn_qkv_b,
                                     &l->attn_out, &l->attn_out_b)))
            return rc;
        if ((rc = get_ffn(p, pre, d, m->n_ffn, &l->ffn_ln_g, &l->ffn_ln_b,
                          &l->ffn_up, &l->ffn_up_b, &l->ffn_down,
                          &l->ffn_down_b)))
            return rc;
    }
    NAME(n, "encoder/layer_norm/gamma");
    if ((rc = get_floats(p, n, 1, (size_t)d, &m->enc_ln_g)))
        return rc;
    return get_floats(p, "encoder/layer_norm/beta", 1, (size_t)d, &m->enc_ln_b);
}

static int load_decoder(parser *p, struct sotto_model *m)
{
    const int d = m->d;
    char pre[64], n[256];
    const variable *proj, *emb;
    int rc;

    if ((rc = get_matrix(p, "decoder/embeddings/weight", m->n_vocab, d,
                         &m->tok_emb)))
        return rc;
    /* The output projection must be the token embedding (tied). */
    proj = find_var(p, "decoder/projection/weight");
    emb = find_var(p, "decoder/embeddings/weight");
    if (proj == NULL)
        return missing(p, "decoder/projection/weight");
    if (proj != emb && (proj->nbytes != emb->nbytes ||
                        memcmp(proj->data, emb->data, emb->nbytes) != 0))
        return sotto__errf(p->err, p->errcap, SOTTO_EUNSUPPORTED,
                           "decoder/projection/weight differs from the token "
                           "embedding; untied output projections are not "
                           "supported yet");
    if ((rc = get_floats(p, "decoder/position_encodings/encodings", 2,
                         (size_t)m->n_text_ctx * d, &m->dec_pos)))
        return rc;
    for (int i = 0; i < m->n_text_layers; i++) {
        sotto__dec_layer *l = &m->dec[i];
        NAME(pre, "decoder/layer_%d", i);
        if ((rc = get_self_attention(p, pre, d, &l->self_ln_g, &l->self_ln_b,
                                     &l->self_qkv, &l->self_qkv_b,
                                     &l->self_out, &l->self_out_b)))
            return rc;
        NAME(n, "%s/attention/layer_norm/gamma", pre);
        if ((rc = get_floats(p, n, 1, (size_t)d, &l->cross_ln_g))) return rc;
        NAME(n, "%s/attention/layer_norm/beta", pre);
        if ((rc = get_floats(p, n, 1, (size_t)d, &l->cross_ln_b))) return rc;
        NAME(n, "%s/attention/linear_0/weight", pre);
        if ((rc = get_matrix(p, n, d, d, &l->cross_q))) return rc;
        NAME(n, "%s/attention/linear_0/bias", pre);
        if ((rc = get_floats(p, n, 1, (size_t)d, &l->cross_q_b))) return rc;
        NAME(n, "%s/attention/linear_1/weight", pre);
        if ((rc = get_matrix(p, n, 2 * d, d, &l->cross_kv))) return rc;
        NAME(n, "%s/attention/linear_1/bias", pre);
        if ((rc = get_floats(p, n, 1, (size_t)2 * d, &l->cross_kv_b))) return rc;
        NAME(n, "%s/attention/linear_2/weight", pre);
        if ((rc = get_matrix(p, n, d, d, &l->cross_out))) return rc;
        NAME(n, "%s/attention/linear_2/bias", pre);
        if ((rc = get_floats(p, n, 1, (size_t)d, &l->cross_out_b))) return rc;
        if ((rc = get_ffn(p, pre, d, m->n_ffn, &l->ffn_ln_g, &l->ffn_ln_b,
                          &l->ffn_up, &l->ffn_up_b, &l->ffn_down,
                          &l->ffn_down_b)))
            return rc;
    }
    if ((rc = get_floats(p, "decoder/layer_norm/gamma", 1, (size_t)d, &m->dec_ln_g)))
        return rc;
    return get_floats(p, "decoder/layer_norm/beta", 1, (size_t)d, &m->dec_ln_b);
}

/* Reads the hyper-parameters off the shapes of a few variables. */
static int read_dims(parser *p, struct sotto_model *m)
{
    const variable *conv1 = find_var(p, "encoder/conv1/weight");
    const variable *emb = find_var(p, "decoder/embeddings/weight");
    const variable *epos = find_var(p, "encoder/position_encodings/encodings");
    const variable *dpos = find_var(p, "decoder/position_encodings/encodings");
    const variable *ffn = find_var(p, "encoder/layer_0/ffn/linear_0/weight");
    long heads, dheads;
    int rc;

    if (conv1 == NULL) return missing(p, "encoder/conv1/weight");
    if (emb == NULL) return missing(p, "decoder/embeddings/weight");
    if (epos == NULL) return missing(p, "encoder/position_encodings/encodings");
    if (dpos == NULL) return missing(p, "decoder/position_encodings/encodings");
    if (ffn == NULL) return missing(p, "encoder/layer_0/ffn/linear_0/weight");
    if (conv1->rank != 3 || conv1->dims[2] != 3)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "encoder/conv1/weight should have shape [d, mels, 3]");
    if (emb->rank != 2 || epos->rank != 2 || dpos->rank != 2 || ffn->rank != 2)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "embedding, position or FFN weights are not matrices");
    m->d = (int)conv1->dims[0];
    m->n_mels = (int)conv1->dims[1];
    m->n_vocab = (int)emb->dims[0];
    m->n_audio_ctx = (int)epos->dims[0];
    m->n_text_ctx = (int)dpos->dims[0];
    m->n_ffn = (int)ffn->dims[0];
    m->dtype = conv1->dtype;
    if ((rc = check_float_dtype(p, conv1)) != 0)
        return rc;
    if (m->n_mels != 80 && m->n_mels != 128)
        return sotto__errf(p->err, p->errcap, SOTTO_EUNSUPPORTED,
                           "the model takes %d mel bins; sotto supports 80 and "
                           "128", m->n_mels);
    if (m->d <= 0 || m->d > SOTTO__MAX_DIM || m->n_vocab < 51864 ||
        m->n_vocab > SOTTO__MAX_DIM * 4 || m->n_audio_ctx < 1 ||
        m->n_audio_ctx > SOTTO__MAX_DIM || m->n_text_ctx < 8 ||
        m->n_text_ctx > SOTTO__MAX_DIM || m->n_ffn <= 0 ||
        m->n_ffn > SOTTO__MAX_DIM)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "implausible model dimensions: d=%d vocab=%d "
                           "audio_ctx=%d text_ctx=%d ffn=%d", m->d, m->n_vocab,
                           m->n_audio_ctx, m->n_text_ctx, m->n_ffn);
    if (ffn->dims[1] != (uint32_t)m->d)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "variable encoder/layer_0/ffn/linear_0/weight has "
                           "shape [%u, %u] but [n_ffn, %d] was expected",
                           ffn->dims[0], ffn->dims[1], m->d);
    if (emb->dims[1] != (uint32_t)m->d || epos->dims[1] != (uint32_t)m->d ||
        dpos->dims[1] != (uint32_t)m->d)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "embedding or position widths differ from d=%d",
                           m->d);
    if ((rc = get_int_scalar(p, "encoder/num_heads", &heads)) != 0)
        return rc;
    if ((rc = get_int_scalar(p, "decoder/num_heads", &dheads)) != 0)
        return rc;
    if (heads <= 0 || heads != dheads || m->d % heads != 0)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "bad head count: encoder %ld, decoder %ld, d=%d",
                           heads, dheads, m->d);
    m->n_heads = (int)heads;
    m->n_audio_layers = count_layers(p, "encoder");
    m->n_text_layers = count_layers(p, "decoder");
    if (m->n_audio_layers == 0 || m->n_text_layers == 0)
        return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                           "model.bin has %d encoder and %d decoder layers",
                           m->n_audio_layers, m->n_text_layers);
    /* Layers must be numbered without gaps: a variable of a layer past the
     * counted ones means one in between is missing. */
    for (uint32_t i = 0; i < p->n_vars; i++) {
        const char *name = p->vars[i].name;
        int enc = strncmp(name, "encoder/layer_", 14) == 0;
        int dec = strncmp(name, "decoder/layer_", 14) == 0;
        long k;
        if (!enc && !dec)
            continue;
        k = strtol(name + 14, NULL, 10);
        if (k >= (enc ? m->n_audio_layers : m->n_text_layers))
            return sotto__errf(p->err, p->errcap, SOTTO_EMODEL,
                               "variable %s belongs to a layer after a "
                               "missing one (%d %s layers found)", name,
                               enc ? m->n_audio_layers : m->n_text_layers,
                               enc ? "encoder" : "decoder");
    }
    return 0;
}

int sotto__model_parse_bin(struct sotto_model *m, const void *buf, size_t len,
                           char *err, size_t errcap)
{
    parser p = { .buf = buf, .len = len, .err = err, .errcap = errcap };
    uint32_t version, revision, n;
    const char *spec;
    size_t small = 0;
    int rc;

    if ((rc = rd_u32(&p, &version, "the format version")) != 0)
        goto fail;
    if (version != SOTTO__BIN_VERSION) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "model.bin has format version %u; sotto reads "
                         "version %d (CTranslate2 >= 3)", version,
                         SOTTO__BIN_VERSION);
        goto fail;
    }
    if ((rc = rd_str(&p, &spec, "the spec name")) != 0)
        goto fail;
    if (strcmp(spec, "WhisperSpec") != 0) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "model.bin holds a %s, not a WhisperSpec", spec);
        goto fail;
    }
    if ((rc = rd_u32(&p, &revision, "the spec revision")) != 0)
        goto fail;
    if (revision == 0) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "model.bin is corrupt: WhisperSpec revision 0");
        goto fail;
    }
    if (revision > SOTTO__SPEC_REVISION_MAX) {
        rc = sotto__errf(err, errcap, SOTTO_EUNSUPPORTED,
                         "WhisperSpec revision %u is not supported yet "
                         "(sotto knows up to %d)", revision,
                         SOTTO__SPEC_REVISION_MAX);
        goto fail;
    }
    if ((rc = rd_u32(&p, &n, "the variable count")) != 0)
        goto fail;
    if (n == 0 || n > SOTTO__MAX_VARIABLES) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "model.bin declares %u variables", n);
        goto fail;
    }
    p.vars = calloc(n, sizeof *p.vars);
    if (p.vars == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < n; i++) {
        if ((rc = parse_variable(&p, &p.vars[i], i)) != 0)
            goto fail;
        p.n_vars++;
    }
    if ((rc = rd_u32(&p, &n, "the alias count")) != 0)
        goto fail;
    if (n > SOTTO__MAX_ALIASES) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "model.bin declares %u aliases", n);
        goto fail;
    }
    p.aliases = calloc(n ? n : 1, sizeof *p.aliases);
    if (p.aliases == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < n; i++) {
        if ((rc = rd_str(&p, &p.aliases[i].name, "an alias name")) != 0 ||
            (rc = rd_str(&p, &p.aliases[i].target, "an alias target")) != 0)
            goto fail;
        p.n_aliases++;
    }
    if (p.off != p.len) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "model.bin has %zu unexpected byte(s) after the "
                         "alias table", p.len - p.off);
        goto fail;
    }

    if ((rc = read_dims(&p, m)) != 0)
        goto fail;
    /* Exactly the float32 copies load_encoder/load_decoder make: the conv
     * biases, both position tables, each layer's vectors, the final norms. */
    {
        const size_t d = (size_t)m->d, f = (size_t)m->n_ffn;
        small = 6 * d + ((size_t)m->n_audio_ctx + (size_t)m->n_text_ctx) * d +
                (size_t)m->n_audio_layers * (9 * d + f) +
                (size_t)m->n_text_layers * (15 * d + f);
    }
    m->small = malloc((small ? small : 1) * sizeof(float));
    m->enc = calloc((size_t)m->n_audio_layers, sizeof *m->enc);
    m->dec = calloc((size_t)m->n_text_layers, sizeof *m->dec);
    if (m->small == NULL || m->enc == NULL || m->dec == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
        goto fail;
    }
    m->small_len = small;
    p.small_next = m->small;
    p.small_end = m->small + small;
    if ((rc = load_encoder(&p, m)) != 0 || (rc = load_decoder(&p, m)) != 0)
        goto fail;
    free(p.vars);
    free(p.aliases);
    return 0;

fail:
    free(p.vars);
    free(p.aliases);
    sotto__model_release(m);
    return rc;
}

static int json_int(const cJSON *item, long lo, long hi, long *out)
{
    double v;

    if (!cJSON_IsNumber(item))
        return -1;
    v = item->valuedouble;
    /* Range first (this also refuses NaN): casting a double outside long's
     * range is undefined behaviour. */
    if (!(v >= (double)lo && v <= (double)hi) || v != (double)(long)v)
        return -1;
    *out = (long)v;
    return 0;
}

static int parse_id_list(const cJSON *root, const char *key, int n_vocab,
                         int *ids, int *n_ids, char *err, size_t errcap)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, key);
    const cJSON *it;
    long v;

    *n_ids = 0;
    if (arr == NULL)
        return 0;
    if (!cJSON_IsArray(arr))
        return sotto__errf(err, errcap, SOTTO_EMODEL,
                           "config.json: %s is not an array", key);
    cJSON_ArrayForEach(it, arr) {
        if (json_int(it, -1, n_vocab - 1, &v) != 0)
            return sotto__errf(err, errcap, SOTTO_EMODEL,
                               "config.json: %s holds a value that is not a "
                               "token id below %d", key, n_vocab);
        if (v < 0)
            continue;   /* -1 means "the default list" in openai's API */
        if (*n_ids >= SOTTO__MAX_SUPPRESS_IDS)
            return sotto__errf(err, errcap, SOTTO_EMODEL,
                               "config.json: %s has more than %d ids", key,
                               SOTTO__MAX_SUPPRESS_IDS);
        ids[(*n_ids)++] = (int)v;
    }
    return 0;
}

int sotto__model_parse_config(struct sotto_model *m, const char *json,
                              char *err, size_t errcap)
{
    cJSON *root = cJSON_Parse(json);
    const cJSON *heads, *it;
    int rc = 0;

    if (root == NULL || !cJSON_IsObject(root)) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "config.json is not a JSON object");
        goto fail;
    }
    m->n_align_heads = 0;
    heads = cJSON_GetObjectItemCaseSensitive(root, "alignment_heads");
    if (heads != NULL && !cJSON_IsArray(heads)) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "config.json: alignment_heads is not an array");
        goto fail;
    }
    cJSON_ArrayForEach(it, heads) {
        long l, h;
        if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 ||
            json_int(cJSON_GetArrayItem(it, 0), 0, m->n_text_layers - 1, &l) ||
            json_int(cJSON_GetArrayItem(it, 1), 0, m->n_heads - 1, &h)) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "config.json: alignment_heads must be [layer, "
                             "head] pairs within %d layers and %d heads",
                             m->n_text_layers, m->n_heads);
            goto fail;
        }
        if (m->n_align_heads >= SOTTO__MAX_ALIGNMENT_HEADS) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "config.json: more than %d alignment heads",
                             SOTTO__MAX_ALIGNMENT_HEADS);
            goto fail;
        }
        m->align_heads[m->n_align_heads][0] = (int)l;
        m->align_heads[m->n_align_heads][1] = (int)h;
        m->n_align_heads++;
    }
    /* Without a list, CTranslate2 uses every head of the second half of the
     * decoder layers. */
    if (m->n_align_heads == 0) {
        for (int l = m->n_text_layers / 2; l < m->n_text_layers; l++)
            for (int h = 0; h < m->n_heads &&
                            m->n_align_heads < SOTTO__MAX_ALIGNMENT_HEADS; h++) {
                m->align_heads[m->n_align_heads][0] = l;
                m->align_heads[m->n_align_heads][1] = h;
                m->n_align_heads++;
            }
    }
    if ((rc = parse_id_list(root, "suppress_ids", m->n_vocab, m->suppress,
                            &m->n_suppress, err, errcap)) != 0)
        goto fail;
    if ((rc = parse_id_list(root, "suppress_ids_begin", m->n_vocab,
                            m->suppress_begin, &m->n_suppress_begin, err,
                            errcap)) != 0)
        goto fail;
fail:
    cJSON_Delete(root);
    return rc;
}

void sotto__model_release(struct sotto_model *m)
{
    free(m->small);
    free(m->enc);
    free(m->dec);
    m->small = NULL;
    m->enc = NULL;
    m->dec = NULL;
}

/* Reads a whole small file into a NUL-terminated buffer. */
static int read_text_file(const char *path, size_t limit, char **out,
                          char *err, size_t errcap)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;

    *out = NULL;
    if (f == NULL)
        return sotto__errf(err, errcap, SOTTO_EIO, "cannot open %s: %s", path,
                           strerror(errno));
    for (;;) {
        if (cap - n < 4096) {
            char *nb;
            cap = cap ? cap * 2 : 65536;
            nb = realloc(buf, cap + 1);
            if (nb == NULL) {
                rc = sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
                goto fail;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        /* Checked on what was read, not on the buffer, which doubles: a
         * file between the limit and twice it must not pass. */
        if (n > limit) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "%s is larger than %zu bytes", path, limit);
            goto fail;
        }
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        rc = sotto__errf(err, errcap, SOTTO_EIO, "cannot read %s", path);
        goto fail;
    }
    buf[n] = 0;
    *out = buf;
    buf = NULL;
fail:
    free(buf);
    fclose(f);
    return rc;
}

static int find_specials(struct sotto_model *m, char *err, size_t errcap)
{
    sotto__specials *sp = &m->sp;
    const sotto__tokenizer *t = m->tok;
    int prev = -1;

    sp->eot = sotto__tokenizer_find(t, "<|endoftext|>");
    sp->sot = sotto__tokenizer_find(t, "<|startoftranscript|>");
    sp->sot_prev = sotto__tokenizer_find(t, "<|startofprev|>");
    sp->sot_lm = sotto__tokenizer_find(t, "<|startoflm|>");
    sp->transcribe = sotto__tokenizer_find(t, "<|transcribe|>");
    sp->translate = sotto__tokenizer_find(t, "<|translate|>");
    sp->no_timestamps = sotto__tokenizer_find(t, "<|notimestamps|>");
    sp->no_speech = sotto__tokenizer_find(t, "<|nospeech|>");
    if (sp->no_speech < 0)
        sp->no_speech = sotto__tokenizer_find(t, "<|nocaptions|>");
    sp->space = sotto__tokenizer_find(t, "\xc4\xa0");   /* "Ġ" */
    if (sp->eot < 0 || sp->sot < 0 || sp->no_timestamps < 0 ||
        sp->sot_prev < 0)
        return sotto__errf(err, errcap, SOTTO_EMODEL,
                           "the vocabulary lacks Whisper's special tokens "
                           "(<|endoftext|>, <|startoftranscript|>, "
                           "<|startofprev|>, <|notimestamps|>)");
    sp->timestamp_begin = sp->no_timestamps + 1;
    if (m->n_vocab - sp->timestamp_begin < 1501)
        return sotto__errf(err, errcap, SOTTO_EMODEL,
                           "the vocabulary has %d timestamp tokens; Whisper "
                           "needs 1501", m->n_vocab - sp->timestamp_begin);
    /* Language tokens follow <|startoftranscript|> up to <|translate|>. */
    sp->lang_first = sp->sot + 1;
    sp->n_langs = 0;
    if (sp->translate > sp->lang_first) {
        for (int id = sp->lang_first; id < sp->translate; id++) {
            const char *s = sotto__tokenizer_token(t, id);
            if (s == NULL || strncmp(s, "<|", 2) != 0)
                break;
            prev = id;
        }
        if (prev >= 0)
            sp->n_langs = prev - sp->lang_first + 1;
    }
    m->multilingual = m->n_vocab >= 51865;
    return 0;
}

sotto_model_params sotto_model_default_params(void)
{
    sotto_model_params p;
    memset(&p, 0, sizeof p);
    return p;
}

static void unmap(struct sotto_model *m)
{
    if (m->map != NULL)
        munmap(m->map, m->map_len);
    m->map = NULL;
}

int sotto_model_create(const char *dir, const sotto_model_params *params,
                       sotto_model **out, char *err, size_t errcap)
{
    sotto_model_params defaults = sotto_model_default_params();
    struct sotto_model *m = NULL;
    char path[4096];
    char *config = NULL;
    struct stat st;
    int fd = -1, rc;

    if (out == NULL || dir == NULL)
        return sotto__errf(err, errcap, SOTTO_EINVAL, "no model folder given");
    *out = NULL;
    if (params == NULL)
        params = &defaults;
    m = calloc(1, sizeof *m);
    if (m == NULL)
        return sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
    m->log = params->log;
    m->log_user = params->log_user;
    m->n_threads = params->n_threads > 0 ? params->n_threads
                                         : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (m->n_threads <= 0)
        m->n_threads = 1;

    if ((size_t)snprintf(path, sizeof path, "%s/model.bin", dir) >= sizeof path) {
        rc = sotto__errf(err, errcap, SOTTO_EINVAL, "model path too long");
        goto fail;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = sotto__errf(err, errcap, SOTTO_EIO, "cannot open %s: %s", path,
                         strerror(errno));
        goto fail;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = sotto__errf(err, errcap, SOTTO_EIO, "%s is not a regular file",
                         path);
        goto fail;
    }
    if (st.st_size < 16) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "%s is truncated (%lld bytes)", path,
                         (long long)st.st_size);
        goto fail;
    }
    m->map_len = (size_t)st.st_size;
    m->map = mmap(NULL, m->map_len, PROT_READ, MAP_SHARED, fd, 0);
    if (m->map == MAP_FAILED) {
        m->map = NULL;
        rc = sotto__errf(err, errcap, SOTTO_EIO, "cannot map %s: %s", path,
                         strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;

    if ((rc = sotto__model_parse_bin(m, m->map, m->map_len, err, errcap)) != 0)
        goto fail;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if ((rc = read_text_file(path, SOTTO__MAX_CONFIG_BYTES, &config, err,
                             errcap)) != 0)
        goto fail;
    if ((rc = sotto__model_parse_config(m, config, err, errcap)) != 0)
        goto fail;
    if ((rc = sotto__tokenizer_create(dir, m->n_vocab, &m->tok, err,
                                      errcap)) != 0)
        goto fail;
    if ((rc = find_specials(m, err, errcap)) != 0)
        goto fail;
    if ((rc = sotto__mel_create(m->n_mels, &m->mel)) != 0) {
        sotto__errf(err, errcap, rc, "cannot set up the mel front end: %s",
                    sotto_strerror(rc));
        goto fail;
    }
    if (params->vad_path != NULL &&
        (rc = sotto__vad_model_load(params->vad_path, &m->vad, err,
                                    errcap)) != 0)
        goto fail;
    sotto__gemm_set_threads(m->n_threads);
    sotto__logf(m->log, m->log_user, SOTTO_LOG_INFO,
                "loaded %s: %d mels, d=%d, %d+%d layers, %d heads, vocab %d, "
                "%s, %zu MB mapped", dir, m->n_mels, m->d, m->n_audio_layers,
                m->n_text_layers, m->n_heads, m->n_vocab,
                m->dtype == SOTTO__DT_F16 ? "float16" : "float32",
                m->map_len >> 20);
    free(config);
    *out = m;
    return 0;

fail:
    if (fd >= 0)
        close(fd);
    free(config);
    sotto_model_destroy(m);
    return rc;
}

void sotto_model_destroy(sotto_model *m)
{
    if (m == NULL)
        return;
    sotto__tokenizer_destroy(m->tok);
    sotto__mel_destroy(m->mel);
    sotto__vad_model_free(m->vad);
    sotto__model_release(m);
    unmap(m);
    free(m);
}

void sotto_model_get_info(const sotto_model *m, sotto_model_info *info)
{
    memset(info, 0, sizeof *info);
    if (m == NULL)
        return;
    info->n_mels = m->n_mels;
    info->n_vocab = m->n_vocab;
    info->n_audio_layers = m->n_audio_layers;
    info->n_text_layers = m->n_text_layers;
    info->d_model = m->d;
    info->n_heads = m->n_heads;
    info->multilingual = m->multilingual;
    info->dtype = m->dtype == SOTTO__DT_F16 ? "float16" : "float32";
    info->mapped_bytes = m->map_len;
    info->has_vad = m->vad != NULL;
}
