/*
 * test_model.c - unit tests of the model loader (model.bin + config.json).
 *
 * Contract: loads the real tiny.en model folder (SOTTO_MODEL, default
 * test_model_dir()) with sotto_model_create() and checks the facts
 * sotto_model_get_info() reports.  Then writes corrupt copies of the folder,
 * each in a fresh temporary directory (config.json, tokenizer.json and
 * vocabulary.txt copied, model.bin rewritten from the original bytes held
 * in memory), and checks that every one is refused with the documented
 * code and a message naming the problem: truncation, a foreign format
 * version or spec, a swapped shape, an unsupported dtype, a byte count that
 * does not match the shape, a missing or broken config.json, a missing
 * folder.  Finally it mutates the bytes in memory and calls
 * sotto__model_parse_bin() / sotto__model_parse_config() directly for the
 * cases that need no files (every short prefix, trailing bytes, bad
 * strings, ranks, dtypes, head counts, aliases, config lists).
 *
 * The record layout (docs/model-format.md): uint16 name length counting the
 * NUL, name, NUL, uint8 rank, rank x uint32 dims, uint8 dtype, uint32 byte
 * count, payload.  Offsets are found by name, not hard-coded, so the test
 * holds for any float16 tiny.en conversion with format version 6.
 * TEST_MODEL_VERBOSE=1 prints each expected failure's code and message.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "engine/model.h"
#include "sotto.h"
#include "test.h"

/* The original files of the model folder, read once. */
static unsigned char *bin;   /* model.bin; bin[bin_len] is a spare 0 byte */
static size_t bin_len;
static char *cfg, *tokjson, *vocab;
static size_t cfg_len, tokjson_len, vocab_len;

/* ---- helpers ------------------------------------------------------------ */

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* Where the parts of one variable record lie in bin. */
typedef struct rec {
    size_t start;     /* the uint16 name length */
    size_t rank_at;   /* the rank byte */
    int rank;
    size_t dims_at;   /* rank x uint32 */
    size_t dtype_at;
    size_t nbytes_at;
    size_t data_at;
    size_t nbytes;
    size_t end;       /* one past the payload */
} rec;

/* Finds the record of variable `name`; exits if absent.  For an alias
 * string only start and rank_at (just after the string) are meaningful. */
static rec find_rec(const char *name)
{
    size_t n = strlen(name) + 1, from = 0;
    rec r;

    memset(&r, 0, sizeof r);
    for (;;) {
        const unsigned char *hit = memmem(bin + from, bin_len - from, name, n);
        size_t at;
        if (hit == NULL) {
            fprintf(stderr, "test_model: no record %s in model.bin\n", name);
            exit(2);
        }
        at = (size_t)(hit - bin);
        if (at >= 2 && (size_t)(bin[at - 2] | bin[at - 1] << 8) == n) {
            r.start = at - 2;
            r.rank_at = at + n;
            break;
        }
        from = at + 1;
    }
    if (r.rank_at >= bin_len)
        return r;   /* a string at the very end (an alias target) */
    r.rank = bin[r.rank_at];
    r.dims_at = r.rank_at + 1;
    r.dtype_at = r.dims_at + 4 * (size_t)r.rank;
    r.nbytes_at = r.dtype_at + 1;
    r.data_at = r.nbytes_at + 4;
    if (r.data_at > bin_len)
        return r;   /* an alias string: no record fields follow */
    r.nbytes = get_u32(bin + r.nbytes_at);
    r.end = r.data_at + r.nbytes;
    return r;
}

static void make_dir(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/sotto_test_model_XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
}

/* Writes `name` in dir from n pieces (pointer, length, pointer, length...). */
static void write_pieces(const char *dir, const char *name, int n, ...)
{
    char path[512];
    va_list ap;
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const void *p = va_arg(ap, const void *);
        size_t len = va_arg(ap, size_t);
        if (len > 0 && fwrite(p, 1, len, f) != len) {
            perror(path);
            exit(2);
        }
    }
    va_end(ap);
    if (fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* A fresh folder with the original config.json (unless !with_config),
 * tokenizer.json and vocabulary.txt, and no model.bin yet. */
static void make_model_dir(char *dir, size_t cap, int with_config)
{
    make_dir(dir, cap);
    if (with_config)
        write_pieces(dir, "config.json", 1, cfg, cfg_len);
    write_pieces(dir, "tokenizer.json", 1, tokjson, tokjson_len);
    write_pieces(dir, "vocabulary.txt", 1, vocab, vocab_len);
}

static void remove_dir(const char *dir)
{
    static const char *const names[] = {
        "model.bin", "config.json", "tokenizer.json", "vocabulary.txt"
    };
    char path[512];

    for (size_t i = 0; i < SOTTO__ARRAY_LEN(names); i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* Loads dir expecting failure with `code` and a message holding needle
 * (and needle2 unless NULL). */
static void expect_fail(const char *dir, int code, const char *needle,
                        const char *needle2, const char *what, int line)
{
    char err[512] = "";
    sotto_model *m = (sotto_model *)1;
    int rc = sotto_model_create(dir, NULL, &m, err, sizeof err);

    if (getenv("TEST_MODEL_VERBOSE") != NULL)
        printf("  %-22s -> %d %s\n", what, rc, err);
    test_checks++;
    if (rc != code || m != NULL || strstr(err, needle) == NULL ||
        (needle2 != NULL && strstr(err, needle2) == NULL)) {
        test_failures++;
        fprintf(stderr, "%s:%d: %s: expected code %d with \"%s\"%s%s%s, got "
                "%d \"%s\"\n", __FILE__, line, what, code, needle,
                needle2 ? " and \"" : "", needle2 ? needle2 : "",
                needle2 ? "\"" : "", rc, err);
    }
    if (rc == 0 && m != NULL && m != (sotto_model *)1)
        sotto_model_destroy(m);
}

/* Writes the (possibly patched) bin as model.bin of a fresh folder and
 * expects the load to fail; the folder is removed afterwards. */
static void expect_bin_fail(int code, const char *needle, const char *needle2,
                            const char *what, int line)
{
    char dir[64];

    make_model_dir(dir, sizeof dir, 1);
    write_pieces(dir, "model.bin", 1, bin, bin_len);
    expect_fail(dir, code, needle, needle2, what, line);
    remove_dir(dir);
}
#define EXPECT_BIN_FAIL(code, needle, needle2, what) \
    expect_bin_fail(code, needle, needle2, what, __LINE__)

/* Parses `len` bytes of the (possibly patched) bin in memory, expecting
 * `code` (ANY_ERROR: any negative one) and a message holding needle (when
 * not NULL). */
#define ANY_ERROR 1
static void expect_parse(size_t len, int code, const char *needle,
                         const char *what, int line)
{
    struct sotto_model *m = calloc(1, sizeof *m);
    char err[512] = "";
    int rc;

    if (m == NULL)
        exit(2);
    rc = sotto__model_parse_bin(m, bin, len, err, sizeof err);
    if (getenv("TEST_MODEL_VERBOSE") != NULL && strcmp(what, "short prefix") &&
        strcmp(what, "tail cut"))
        printf("  %-22s -> %d %s\n", what, rc, err);
    test_checks++;
    if ((code == ANY_ERROR ? rc >= 0 : rc != code) ||
        (code != 0 && err[0] == 0) ||
        (needle != NULL && strstr(err, needle) == NULL)) {
        test_failures++;
        fprintf(stderr, "%s:%d: %s (%zu bytes): expected code %d with "
                "\"%s\", got %d \"%s\"\n", __FILE__, line, what, len, code,
                needle ? needle : "", rc, err);
    }
    if (rc != 0) {
        test_checks++;
        if (m->small != NULL || m->enc != NULL || m->dec != NULL) {
            test_failures++;
            fprintf(stderr, "%s:%d: %s: allocations left after a failed "
                    "parse\n", __FILE__, line, what);
        }
    }
    sotto__model_release(m);
    free(m);
}
#define EXPECT_PARSE(len, code, needle, what) \
    expect_parse(len, code, needle, what, __LINE__)

/* ---- the real model ----------------------------------------------------- */

static void test_real_model(const char *dir)
{
    sotto_model *m = NULL;
    sotto_model_info info;
    char err[512] = "";
    int rc = sotto_model_create(dir, NULL, &m, err, sizeof err);

    CHECK_INT_EQ(rc, SOTTO_OK);
    if (rc != 0) {
        fprintf(stderr, "test_model: cannot load %s: %s\n", dir, err);
        return;
    }
    CHECK(m != NULL);
    sotto_model_get_info(m, &info);
    CHECK_INT_EQ(info.n_mels, 80);
    CHECK_INT_EQ(info.n_vocab, 51864);
    CHECK_INT_EQ(info.n_audio_layers, 4);
    CHECK_INT_EQ(info.n_text_layers, 4);
    CHECK_INT_EQ(info.d_model, 384);
    CHECK_INT_EQ(info.n_heads, 6);
    CHECK_STR_EQ(info.dtype, "float16");
    CHECK_INT_EQ(info.mapped_bytes, 75537502);
    CHECK_INT_EQ(info.mapped_bytes, bin_len);
    CHECK_INT_EQ(info.multilingual, 0);
    /* The internal view: FFN width, contexts, tiny.en's alignment heads
     * and suppression lists from config.json, special tokens. */
    CHECK_INT_EQ(m->n_ffn, 1536);
    CHECK_INT_EQ(m->n_audio_ctx, 1500);
    CHECK_INT_EQ(m->n_text_ctx, 448);
    CHECK_INT_EQ(m->n_align_heads, 8);
    CHECK_INT_EQ(m->align_heads[0][0], 1);
    CHECK_INT_EQ(m->align_heads[0][1], 0);
    CHECK_INT_EQ(m->align_heads[7][0], 3);
    CHECK_INT_EQ(m->align_heads[7][1], 4);
    CHECK_INT_EQ(m->n_suppress, 90);
    CHECK_INT_EQ(m->n_suppress_begin, 2);
    CHECK_INT_EQ(m->suppress_begin[0], 220);
    CHECK_INT_EQ(m->suppress_begin[1], 50256);
    CHECK_INT_EQ(m->sp.eot, 50256);
    CHECK_INT_EQ(m->sp.sot, 50257);
    CHECK_INT_EQ(m->sp.no_timestamps, 50362);
    CHECK_INT_EQ(m->sp.timestamp_begin, 50363);
    /* The embedding weight is used in place from the mapping. */
    CHECK(m->tok_emb.data == (const unsigned char *)m->map +
                             find_rec("decoder/embeddings/weight").data_at);
    CHECK_INT_EQ(m->tok_emb.dtype, SOTTO__DT_F16);
    sotto_model_get_info(NULL, &info);
    CHECK_INT_EQ(info.n_vocab, 0);
    sotto_model_destroy(m);

    /* An unmodified copy loads too (the temp-folder machinery works). */
    {
        char copy[64];
        make_model_dir(copy, sizeof copy, 1);
        write_pieces(copy, "model.bin", 1, bin, bin_len);
        m = NULL;
        CHECK_INT_EQ(sotto_model_create(copy, NULL, &m, err, sizeof err), 0);
        sotto_model_destroy(m);
        remove_dir(copy);
    }
}

/* ---- corrupt copies, through sotto_model_create() ----------------------- */

static void test_truncated(void)
{
    char dir[64];

    make_model_dir(dir, sizeof dir, 1);
    write_pieces(dir, "model.bin", 1, bin, bin_len / 2);
    expect_fail(dir, SOTTO_EMODEL, "truncated", NULL, "half a model.bin",
                __LINE__);
    write_pieces(dir, "model.bin", 1, bin, (size_t)10);
    expect_fail(dir, SOTTO_EMODEL, "truncated", NULL, "10-byte model.bin",
                __LINE__);
    write_pieces(dir, "model.bin", 1, bin, bin_len - 1);
    expect_fail(dir, SOTTO_EMODEL, "truncated", NULL, "one byte short",
                __LINE__);
    write_pieces(dir, "model.bin", 1, bin, (size_t)0);
    expect_fail(dir, SOTTO_EMODEL, "truncated", NULL, "empty model.bin",
                __LINE__);
    remove_dir(dir);
}

static void test_version(void)
{
    uint32_t v = get_u32(bin);

    CHECK_INT_EQ(v, 6);
    put_u32(bin, 5);
    EXPECT_BIN_FAIL(SOTTO_EMODEL, "version", "5", "format version 5");
    put_u32(bin, 7);
    EXPECT_BIN_FAIL(SOTTO_EMODEL, "version", "7", "format version 7");
    put_u32(bin, v);
}

static void test_swapped_shape(void)
{
    const char *name = "encoder/layer_0/ffn/linear_0/weight";
    rec r = find_rec(name);
    unsigned char save[8];

    CHECK_INT_EQ(r.rank, 2);
    CHECK_INT_EQ(get_u32(bin + r.dims_at), 1536);
    CHECK_INT_EQ(get_u32(bin + r.dims_at + 4), 384);
    memcpy(save, bin + r.dims_at, 8);
    put_u32(bin + r.dims_at, 384);
    put_u32(bin + r.dims_at + 4, 1536);
    EXPECT_BIN_FAIL(SOTTO_EMODEL, name, "shape", "swapped FFN shape");
    memcpy(bin + r.dims_at, save, 8);

    /* The same for a matrix that does not set a hyper-parameter. */
    name = "decoder/layer_0/attention/linear_1/weight";
    r = find_rec(name);
    CHECK_INT_EQ(get_u32(bin + r.dims_at), 768);
    memcpy(save, bin + r.dims_at, 8);
    put_u32(bin + r.dims_at, 384);
    put_u32(bin + r.dims_at + 4, 768);
    EXPECT_BIN_FAIL(SOTTO_EMODEL, name, "[768, 384]", "swapped K/V shape");
    memcpy(bin + r.dims_at, save, 8);
}

static void test_missing_config(void)
{
    char dir[64];

    make_model_dir(dir, sizeof dir, 0);
    write_pieces(dir, "model.bin", 1, bin, bin_len);
    expect_fail(dir, SOTTO_EIO, "config.json", NULL, "no config.json",
                __LINE__);
    remove_dir(dir);
}

static void test_dtypes(void)
{
    const char *name = "encoder/layer_0/ffn/linear_0/weight";
    rec r = find_rec(name);
    unsigned char hdr[5];
    char dir[64];
    size_t count = r.nbytes / 2;

    /* int8: one byte per item, so the byte count and payload shrink. */
    CHECK_INT_EQ(bin[r.dtype_at], SOTTO__DT_F16);
    hdr[0] = SOTTO__DT_I8;
    put_u32(hdr + 1, (uint32_t)count);
    make_model_dir(dir, sizeof dir, 1);
    write_pieces(dir, "model.bin", 4, bin, r.dtype_at, hdr, sizeof hdr,
                 bin + r.data_at, count, bin + r.end, bin_len - r.end);
    expect_fail(dir, SOTTO_EUNSUPPORTED, "not supported yet", "int8",
                "int8 FFN weight", __LINE__);
    remove_dir(dir);

    /* bfloat16 and int16 have float16's item size: flip the code only. */
    name = "encoder/conv1/weight";
    r = find_rec(name);
    bin[r.dtype_at] = SOTTO__DT_BF16;
    EXPECT_BIN_FAIL(SOTTO_EUNSUPPORTED, "not supported yet", "bfloat16",
                    "bfloat16 conv1");
    bin[r.dtype_at] = SOTTO__DT_I16;
    EXPECT_BIN_FAIL(SOTTO_EUNSUPPORTED, "not supported yet", name,
                    "int16 conv1");
    bin[r.dtype_at] = SOTTO__DT_F16;
}

static void test_byte_count(void)
{
    const char *name = "encoder/conv1/bias";
    rec r = find_rec(name);
    uint32_t n = get_u32(bin + r.nbytes_at);

    CHECK_INT_EQ(n, 768);
    put_u32(bin + r.nbytes_at, n + 2);
    EXPECT_BIN_FAIL(SOTTO_EMODEL, "bytes", name, "byte count + 2");
    put_u32(bin + r.nbytes_at, n - 2);
    EXPECT_BIN_FAIL(SOTTO_EMODEL, "bytes", name, "byte count - 2");
    put_u32(bin + r.nbytes_at, n);
}

static void test_no_folder(void)
{
    char dir[64], sub[128];

    expect_fail("/nonexistent/sotto-no-such-model", SOTTO_EIO, "model.bin",
                NULL, "no folder", __LINE__);
    /* A folder with everything but model.bin. */
    make_model_dir(dir, sizeof dir, 1);
    expect_fail(dir, SOTTO_EIO, "model.bin", NULL, "no model.bin", __LINE__);
    /* model.bin that is a folder. */
    snprintf(sub, sizeof sub, "%s/model.bin", dir);
    CHECK(mkdir(sub, 0700) == 0);
    expect_fail(dir, SOTTO_EIO, "model.bin", NULL, "model.bin a folder",
                __LINE__);
    rmdir(sub);
    remove_dir(dir);
}

static void test_bad_config(void)
{
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"this is not JSON", "JSON"},
        {"[1, 2, 3]", "JSON"},
        {"{\"alignment_heads\": [[4, 0]]}", "alignment_heads"},
        {"{\"alignment_heads\": [[0, 6]]}", "alignment_heads"},
        {"{\"alignment_heads\": [[-1, 0]]}", "alignment_heads"},
        {"{\"alignment_heads\": [[1, 0, 2]]}", "alignment_heads"},
        {"{\"alignment_heads\": 3}", "alignment_heads"},
        {"{\"suppress_ids\": [51864]}", "suppress_ids"},
        {"{\"suppress_ids_begin\": [1.5]}", "suppress_ids_begin"},
        {"{\"suppress_ids\": \"1 2\"}", "suppress_ids"},
    };
    char dir[64];

    make_model_dir(dir, sizeof dir, 0);
    write_pieces(dir, "model.bin", 1, bin, bin_len);
    for (size_t i = 0; i < SOTTO__ARRAY_LEN(cases); i++) {
        write_pieces(dir, "config.json", 1, cases[i].json,
                     strlen(cases[i].json));
        expect_fail(dir, SOTTO_EMODEL, cases[i].needle, NULL, cases[i].json,
                    __LINE__);
    }
    /* SOTTO__MAX_CONFIG_BYTES (model.c), 16 MiB, and one byte more (a
     * sparse file of zeros: the size is checked as it is read). */
    {
        char path[128];
        snprintf(path, sizeof path, "%s/config.json", dir);
        CHECK(truncate(path, (16 << 20) + 1) == 0);
        expect_fail(dir, SOTTO_EMODEL, "larger than 16777216 bytes", NULL,
                    "a config.json over 16 MiB", __LINE__);
    }
    remove_dir(dir);
}

static void test_spec_name(void)
{
    static const char other[] = "TransformerSpec";
    unsigned char len[2] = { sizeof other, 0 };
    char dir[64];
    size_t after;

    /* The spec string follows the version: uint16 12, "WhisperSpec\0". */
    CHECK_INT_EQ(bin[4] | bin[5] << 8, 12);
    CHECK(memcmp(bin + 6, "WhisperSpec", 12) == 0);
    after = 6 + 12;
    make_model_dir(dir, sizeof dir, 1);
    write_pieces(dir, "model.bin", 4, bin, (size_t)4, len, sizeof len, other,
                 sizeof other, bin + after, bin_len - after);
    expect_fail(dir, SOTTO_EMODEL, other, "WhisperSpec", "TransformerSpec",
                __LINE__);
    remove_dir(dir);
}

/* ---- in-memory mutations, through sotto__model_parse_bin() -------------- */

static void test_parse_in_memory(void)
{
    rec r;
    unsigned char save[16];
    uint32_t v;

    EXPECT_PARSE(bin_len, 0, NULL, "the original");

    /* Every prefix of the header and first records, and of the tail. */
    for (size_t n = 0; n < 600; n++)
        EXPECT_PARSE(n, SOTTO_EMODEL, NULL, "short prefix");
    for (size_t k = 1; k <= 128; k++)
        EXPECT_PARSE(bin_len - k, SOTTO_EMODEL, "truncated", "tail cut");
    /* One byte too many (bin has a spare NUL after the file). */
    EXPECT_PARSE(bin_len + 1, SOTTO_EMODEL, "unexpected byte",
                 "trailing byte");

    /* Spec revision. */
    v = get_u32(bin + 18);
    CHECK_INT_EQ(v, 3);
    put_u32(bin + 18, 4);
    EXPECT_PARSE(bin_len, SOTTO_EUNSUPPORTED, "revision", "revision 4");
    put_u32(bin + 18, 0);
    EXPECT_PARSE(bin_len, ANY_ERROR, "revision", "revision 0");
    put_u32(bin + 18, v);

    /* Variable count: none, too many for the file. */
    v = get_u32(bin + 22);
    put_u32(bin + 22, 0);
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, "variables", "no variables");
    put_u32(bin + 22, 0xffffffffu);
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, "variables", "2^32-1 variables");
    put_u32(bin + 22, v + 1);
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, NULL, "one variable more");
    put_u32(bin + 22, v - 1);
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, NULL, "one variable less");
    put_u32(bin + 22, v);

    /* A name without its NUL, an empty name. */
    r = find_rec("encoder/conv1/bias");
    bin[r.rank_at - 1] = 'x';
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, "NUL-terminated", "name without NUL");
    bin[r.rank_at - 1] = 0;
    memcpy(save, bin + r.start, 2);
    bin[r.start] = bin[r.start + 1] = 0;
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, "empty string", "empty name");
    memcpy(bin + r.start, save, 2);

    /* Rank too large, unknown dtype, int32 matrix. */
    bin[r.rank_at] = 9;
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, "rank", "rank 9");
    bin[r.rank_at] = 1;
    bin[r.dtype_at] = 6;
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, "unknown dtype", "dtype 6");
    bin[r.dtype_at] = SOTTO__DT_F16;
    r = find_rec("encoder/conv1/weight");
    CHECK_INT_EQ(get_u32(bin + r.dims_at + 4), 80);
    /* [384, 80, 3] float16 = [384, 40, 3] int32 (same bytes). */
    put_u32(bin + r.dims_at + 4, 40);
    bin[r.dtype_at] = SOTTO__DT_I32;
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, "int32", "int32 conv1");
    bin[r.dtype_at] = SOTTO__DT_F16;
    put_u32(bin + r.dims_at + 4, 80);

    /* A dimension far beyond the file. */
    r = find_rec("encoder/conv2/bias");
    put_u32(bin + r.dims_at, 0x7fffffffu);
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, "encoder/conv2/bias", "huge dim");
    put_u32(bin + r.dims_at, 384);

    /* Head counts: 5 does not divide 384; the two sides disagree; 0. */
    r = find_rec("encoder/num_heads");
    CHECK_INT_EQ(bin[r.data_at], 6);
    bin[r.data_at] = 5;
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, "head count", "5 heads");
    bin[r.data_at] = 4;
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, "head count", "4 vs 6 heads");
    bin[r.data_at] = 0;
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, "head count", "0 heads");
    bin[r.data_at] = 6;
    /* num_heads stored as a float. */
    bin[r.dtype_at] = SOTTO__DT_F16;
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, "integer scalar", "float heads");
    bin[r.dtype_at] = SOTTO__DT_I16;

    /* A variable the loader needs, renamed: named in the message. */
    r = find_rec("decoder/layer_norm/gamma");
    bin[r.rank_at - 2] = 'X';
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, "decoder/layer_norm/gamma",
                 "missing variable");
    bin[r.rank_at - 2] = 'a';
    r = find_rec("decoder/embeddings/weight");
    bin[r.rank_at - 2] = 'X';
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, "decoder/embeddings/weight",
                 "missing embedding");
    bin[r.rank_at - 2] = 't';

    /* The alias table: a target that does not exist, and no alias. */
    r = find_rec("decoder/projection/weight");   /* the alias string */
    CHECK_INT_EQ(get_u32(bin + r.start - 4), 1);  /* alias count */
    {
        size_t tgt = r.rank_at;   /* uint16 length, then the target */
        CHECK(memcmp(bin + tgt + 2, "decoder/embeddings/weight", 26) == 0);
        bin[tgt + 2 + 24] = 'X';
        EXPECT_PARSE(bin_len, SOTTO_EMODEL, "decoder/projection/weight",
                     "alias to nothing");
        bin[tgt + 2 + 24] = 't';
        put_u32(bin + r.start - 4, 0);
        EXPECT_PARSE(r.start, SOTTO_EMODEL, "decoder/projection/weight",
                     "no alias");
        put_u32(bin + r.start - 4, 2);
        EXPECT_PARSE(bin_len, SOTTO_EMODEL, "truncated", "alias missing");
        /* SOTTO__MAX_ALIASES (model.c) is 100000. */
        put_u32(bin + r.start - 4, 100001);
        EXPECT_PARSE(bin_len, SOTTO_EMODEL, "declares 100001 aliases",
                     "100001 aliases");
        put_u32(bin + r.start - 4, 1);
    }

    /* Mel bins other than 80 and 128: [384, 40, 6] has conv1's size. */
    r = find_rec("encoder/conv1/weight");
    put_u32(bin + r.dims_at + 4, 40);
    put_u32(bin + r.dims_at + 8, 6);
    EXPECT_PARSE(bin_len, SOTTO_EMODEL, "encoder/conv1/weight",
                 "conv1 kernel 6");
    put_u32(bin + r.dims_at + 8, 3);
    put_u32(bin + r.dims_at + 4, 80);

    EXPECT_PARSE(bin_len, 0, NULL, "the original, after all patches");

    /* A tiny message buffer is still NUL-terminated. */
    {
        struct sotto_model *m = calloc(1, sizeof *m);
        char err[8];
        memset(err, 'x', sizeof err);
        CHECK_INT_EQ(sotto__model_parse_bin(m, bin, 3, err, sizeof err),
                     SOTTO_EMODEL);
        CHECK(memchr(err, 0, sizeof err) != NULL);
        sotto__model_release(m);
        free(m);
    }
}

static void test_parse_config(void)
{
    struct sotto_model *m = calloc(1, sizeof *m);
    char err[512];

    if (m == NULL)
        exit(2);
    m->n_text_layers = 4;
    m->n_heads = 6;
    m->n_vocab = 51864;

    /* No alignment heads: CTranslate2 takes every head of the second half
     * of the layers, here 12 pairs [2,0]..[3,5]. */
    CHECK_INT_EQ(sotto__model_parse_config(m, "{}", err, sizeof err), 0);
    CHECK_INT_EQ(m->n_align_heads, 12);
    for (int i = 0; i < m->n_align_heads; i++) {
        CHECK_INT_EQ(m->align_heads[i][0], 2 + i / 6);
        CHECK_INT_EQ(m->align_heads[i][1], i % 6);
    }
    CHECK_INT_EQ(m->n_suppress, 0);

    /* -1 is openai's "default list" marker and is skipped. */
    CHECK_INT_EQ(sotto__model_parse_config(
                     m, "{\"suppress_ids\": [-1, 5, 51863], "
                        "\"alignment_heads\": [[3, 5]]}", err, sizeof err),
                 0);
    CHECK_INT_EQ(m->n_suppress, 2);
    CHECK_INT_EQ(m->suppress[0], 5);
    CHECK_INT_EQ(m->suppress[1], 51863);
    CHECK_INT_EQ(m->n_align_heads, 1);

    /* Out of range, not integers, huge: refused, never undefined. */
    CHECK_INT_EQ(sotto__model_parse_config(
                     m, "{\"suppress_ids\": [1e300]}", err, sizeof err),
                 SOTTO_EMODEL);
    CHECK_INT_EQ(sotto__model_parse_config(
                     m, "{\"suppress_ids\": [-1e300]}", err, sizeof err),
                 SOTTO_EMODEL);
    CHECK_INT_EQ(sotto__model_parse_config(
                     m, "{\"alignment_heads\": [[1e19, 0]]}", err, sizeof err),
                 SOTTO_EMODEL);
    CHECK_INT_EQ(sotto__model_parse_config(
                     m, "{\"suppress_ids\": [-2]}", err, sizeof err),
                 SOTTO_EMODEL);
    CHECK_INT_EQ(sotto__model_parse_config(m, "", err, sizeof err),
                 SOTTO_EMODEL);
    CHECK(strstr(err, "config.json") != NULL);

    /* More than the fixed maxima. */
    {
        size_t cap = 16 * 2048 + 64, n = 0;
        char *json = malloc(cap);
        if (json == NULL)
            exit(2);
        n += (size_t)snprintf(json + n, cap - n, "{\"suppress_ids\": [");
        for (int i = 0; i <= SOTTO__MAX_SUPPRESS_IDS; i++)
            n += (size_t)snprintf(json + n, cap - n, "%s%d", i ? "," : "", i);
        snprintf(json + n, cap - n, "]}");
        CHECK_INT_EQ(sotto__model_parse_config(m, json, err, sizeof err),
                     SOTTO_EMODEL);
        CHECK(strstr(err, "suppress_ids") != NULL);
        n = (size_t)snprintf(json, cap, "{\"alignment_heads\": [");
        for (int i = 0; i <= SOTTO__MAX_ALIGNMENT_HEADS; i++)
            n += (size_t)snprintf(json + n, cap - n, "%s[1, 1]",
                                  i ? "," : "");
        snprintf(json + n, cap - n, "]}");
        CHECK_INT_EQ(sotto__model_parse_config(m, json, err, sizeof err),
                     SOTTO_EMODEL);
        CHECK(strstr(err, "alignment heads") != NULL);
        free(json);
    }
    sotto__model_release(m);
    free(m);
}

static char *read_aux(const char *dir, const char *name, size_t *len)
{
    char path[4096];
    char *buf;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    buf = test_read_file(path, len);
    if (buf == NULL) {
        fprintf(stderr, "test_model: cannot read %s (set SOTTO_MODEL to the "
                "tiny.en model folder)\n", path);
        exit(2);
    }
    return buf;
}

/* ---- the loader's bounds, on synthetic models ---------------------------- */

/* Parses fuzz/seeds/model/NAME (written by fuzz/make_model_seeds.py, run
 * from the repository root as `make test` does) into bin, expecting code
 * and needle as EXPECT_PARSE does. */
static void expect_seed(const char *name, int code, const char *needle, int line)
{
    char path[256];
    unsigned char *save = bin;
    size_t save_len = bin_len;

    snprintf(path, sizeof path, "fuzz/seeds/model/%s", name);
    bin = (unsigned char *)read_aux(".", path, &bin_len);
    expect_parse(bin_len, code, needle, name, line);
    free(bin);
    bin = save;
    bin_len = save_len;
}
#define EXPECT_SEED(name, code, needle) expect_seed(name, code, needle, __LINE__)

static void test_dimension_limits(void)
{
    EXPECT_SEED("limit_text_ctx7_d1.bin", SOTTO_EMODEL, "implausible model dimensions");
    EXPECT_SEED("limit_audio_ctx65537_d1.bin", SOTTO_EMODEL, "audio_ctx=65537");
    EXPECT_SEED("limit_ffn65537_d1.bin", SOTTO_EMODEL, "ffn=65537");
    EXPECT_SEED("limit_vocab262145_d1.bin", SOTTO_EMODEL, "vocab=262145");
    /* SOTTO__MAX_LAYERS: 128 decoder layers load, a 129th is refused. */
    EXPECT_SEED("limit_layers128_d1.bin", 0, NULL);
    EXPECT_SEED("limit_layers129_d1.bin", SOTTO_EMODEL, "128 decoder layers found");
}

int main(void)
{
    const char *dir = test_model_dir();

    bin = (unsigned char *)read_aux(dir, "model.bin", &bin_len);
    cfg = read_aux(dir, "config.json", &cfg_len);
    tokjson = read_aux(dir, "tokenizer.json", &tokjson_len);
    vocab = read_aux(dir, "vocabulary.txt", &vocab_len);

    sotto_model_destroy(NULL);   /* safe */
    test_real_model(dir);
    test_truncated();
    test_version();
    test_swapped_shape();
    test_missing_config();
    test_dtypes();
    test_byte_count();
    test_no_folder();
    test_bad_config();
    test_spec_name();
    test_parse_in_memory();
    test_parse_config();
    test_dimension_limits();

    free(bin);
    free(cfg);
    free(tokjson);
    free(vocab);
    return test_main_exit("test_model");
}
