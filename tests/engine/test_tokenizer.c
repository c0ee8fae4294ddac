/*
 * test_tokenizer.c - unit tests of the byte-level BPE tokenizer.
 *
 * Contract: checks sotto__tokenizer_* against the real tiny.en model folder
 * (SOTTO_MODEL, default test_model_dir()) and small hand-made vocabulary
 * files in temporary folders.  The expected encodings below were produced
 * by the HF tokenizers package (the library faster-whisper uses):
 *   Tokenizer.from_file("tokenizer.json")
 *       .encode(text, add_special_tokens=False).ids
 * and the expected decodings by its decode(ids), so a pass means sotto
 * tokenizes exactly as faster-whisper does.  Error cases check that bad
 * files fail with the right code and a message instead of crashing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "engine/tokenizer.h"
#include "test.h"

#define N_VOCAB 51864 /* tiny.en */
#define EOT 50256

struct enc_case {
    const char *text;
    int n;
    int ids[24];
};

/* From HF tokenizers 0.23 on tiny.en's tokenizer.json. */
static const struct enc_case cases[] = {
    {"Hello world", 2, {15496, 995}},
    {" Hello world", 2, {18435, 995}},
    {"Hello, world! How are you?", 8,
     {15496, 11, 995, 0, 1374, 389, 345, 30}},
    {"In 1984, 3.14159 and 1,000,000 people paid $5.99.", 20,
     {818, 12844, 11, 513, 13, 1415, 19707, 290, 352, 11, 830, 11, 830, 661,
      3432, 720, 20, 13, 2079, 13}},
    {"I don't think we'll make it; they're sure I've seen 'em", 17,
     {40, 836, 470, 892, 356, 1183, 787, 340, 26, 484, 821, 1654, 314, 1053,
      1775, 705, 368}},
    {"multiple   spaces    here  ", 10,
     {48101, 220, 220, 9029, 220, 220, 220, 994, 220, 220}},
    {"line one\012line two\012\012\011indented\015\012", 11,
     {1370, 530, 198, 1370, 734, 628, 197, 521, 4714, 201, 198}},
    {" caf\303\251 na\303\257ve r\303\251sum\303\251", 5,
     {40304, 41492, 40560, 16345, 2634}},
    {"\346\227\245\346\234\254\350\252\236\343\201\256\343\203\206\343\202"
     "\255\343\202\271\343\203\210", 10,
     {33768, 98, 17312, 105, 45739, 252, 5641, 24336, 25084, 43302}},
    {"emoji \360\237\230\200\360\237\221\215\360\237\217\275 done!", 11,
     {368, 31370, 30325, 222, 41840, 235, 8582, 237, 121, 1760, 0}},
    {"a<|endoftext|> b<|notimestamps|>", 4, {64, 50256, 275, 50362}},
    {" the", 1, {262}},
    {"", 0, {0}},
};

/* ---- temporary model folders ------------------------------------------ */

static void make_dir(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/sotto_test_tok_XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
}

static void write_file(const char *dir, const char *name, const void *data,
                       size_t n)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, n, f) != n) {
        perror(path);
        exit(2);
    }
    fclose(f);
}

static void write_str(const char *dir, const char *name, const char *s)
{
    write_file(dir, name, s, strlen(s));
}

static void remove_file(const char *dir, const char *name)
{
    char path[512];

    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static void remove_dir(const char *dir)
{
    remove_file(dir, "tokenizer.json");
    remove_file(dir, "vocabulary.json");
    remove_file(dir, "vocabulary.txt");
    rmdir(dir);
}

/* Loads dir with n_vocab, expecting failure with `code` and a message
 * containing `needle`. */
static void expect_fail(const char *dir, int n_vocab, int code,
                        const char *needle, int line)
{
    char err[256] = "";
    sotto__tokenizer *tok = (sotto__tokenizer *)1;
    int rc = sotto__tokenizer_create(dir, n_vocab, &tok, err, sizeof err);

    test_checks++;
    if (rc != code || tok != NULL || strstr(err, needle) == NULL) {
        test_failures++;
        fprintf(stderr, "%s:%d: expected code %d with \"%s\", got %d \"%s\"\n",
                __FILE__, line, code, needle, rc, err);
    }
    if (rc == 0)
        sotto__tokenizer_destroy(tok);
}
#define EXPECT_FAIL(dir, nv, code, needle) \
    expect_fail(dir, nv, code, needle, __LINE__)

/* ---- the real model ----------------------------------------------------- */

static void test_lookups(const sotto__tokenizer *tok)
{
    CHECK_INT_EQ(sotto__tokenizer_n_vocab(tok), N_VOCAB);
    CHECK_INT_EQ(sotto__tokenizer_find(tok, "<|endoftext|>"), 50256);
    CHECK_INT_EQ(sotto__tokenizer_find(tok, "<|startoftranscript|>"), 50257);
    CHECK_INT_EQ(sotto__tokenizer_find(tok, "<|en|>"), 50258);
    CHECK_INT_EQ(sotto__tokenizer_find(tok, "<|notimestamps|>"), 50362);
    CHECK_INT_EQ(sotto__tokenizer_find(tok, "<|0.00|>"), 50363);
    CHECK_INT_EQ(sotto__tokenizer_find(tok, "<|30.00|>"), 51863);
    CHECK_INT_EQ(sotto__tokenizer_find(tok, "\304\240the"), 262); /* Ġthe */
    CHECK_INT_EQ(sotto__tokenizer_find(tok, "no such token!"), -1);
    CHECK_INT_EQ(sotto__tokenizer_find(tok, NULL), -1);
    CHECK_STR_EQ(sotto__tokenizer_token(tok, 50363), "<|0.00|>");
    CHECK_STR_EQ(sotto__tokenizer_token(tok, 50364), "<|0.02|>");
    CHECK_STR_EQ(sotto__tokenizer_token(tok, 51863), "<|30.00|>");
    CHECK_STR_EQ(sotto__tokenizer_token(tok, 262), "\304\240the");
    CHECK_STR_EQ(sotto__tokenizer_token(tok, 0), "!");
    CHECK(sotto__tokenizer_token(tok, -1) == NULL);
    CHECK(sotto__tokenizer_token(tok, N_VOCAB) == NULL);
}

static void test_token_bytes(const sotto__tokenizer *tok)
{
    unsigned char b[SOTTO__MAX_TOKEN_BYTES];

    CHECK_INT_EQ(sotto__tokenizer_token_bytes(tok, 33768, b, sizeof b), 2);
    CHECK(b[0] == 0xE6 && b[1] == 0x97); /* "æĹ": half of 日 */
    CHECK_INT_EQ(sotto__tokenizer_token_bytes(tok, 262, b, sizeof b), 4);
    CHECK(memcmp(b, " the", 4) == 0);
    CHECK_INT_EQ(sotto__tokenizer_token_bytes(tok, 50256, b, sizeof b), 13);
    CHECK(memcmp(b, "<|endoftext|>", 13) == 0);
    CHECK_INT_EQ(sotto__tokenizer_token_bytes(tok, 262, b, 2), 2);
    CHECK_INT_EQ(sotto__tokenizer_token_bytes(tok, 262, NULL, 0), 0);
    CHECK_INT_EQ(sotto__tokenizer_token_bytes(tok, -1, b, sizeof b),
                 SOTTO_EINVAL);
    CHECK_INT_EQ(sotto__tokenizer_token_bytes(tok, N_VOCAB, b, sizeof b),
                 SOTTO_EINVAL);
}

static void check_decode(const sotto__tokenizer *tok, const int *ids, int n,
                         const char *want, int line)
{
    char out[512];
    int rc = sotto__tokenizer_decode(tok, ids, n, EOT, out, sizeof out);

    test_checks++;
    if (rc != (int)strlen(want) || strcmp(out, want) != 0) {
        test_failures++;
        fprintf(stderr, "%s:%d: decode gave %d \"%s\", want \"%s\"\n",
                __FILE__, line, rc, rc >= 0 ? out : "", want);
    }
}
#define CHECK_DECODE(tok, want, ...)                                        \
    do {                                                                    \
        static const int ids_[] = {__VA_ARGS__};                            \
        check_decode(tok, ids_, (int)SOTTO__ARRAY_LEN(ids_), want,          \
                     __LINE__);                                             \
    } while (0)

static void test_decode(const sotto__tokenizer *tok)
{
    static const int some[] = {15496, 995};
    char out[64];

    /* Expected strings from HF's decode(ids). */
    CHECK_DECODE(tok, "Hello world", 50257, 50362, 15496, 995, 50256, 50363);
    CHECK_DECODE(tok, "\346\227\245", 33768, 98);             /* 日 */
    CHECK_DECODE(tok, "\357\277\275", 33768);                 /* E6 97 */
    CHECK_DECODE(tok, "\357\277\275", 98);                    /* A5 */
    CHECK_DECODE(tok, "\357\277\275\357\277\275", 98, 33768);
    CHECK_DECODE(tok, "\357\277\275A", 33768, 32);
    CHECK_DECODE(tok, "\357\277\275\357\277\275", 124, 222);  /* C0 80 */
    CHECK_DECODE(tok, "\357\277\275\357\277\275\357\277\275", /* ED A0 80 */
                 169, 254, 222);
    CHECK_DECODE(tok, "\357\277\275", 187);                   /* FF */
    CHECK_DECODE(tok, "\357\277\275", 172, 253, 246);         /* F0 9F 98 */
    CHECK_DECODE(tok, "\360\237\230\200", 172, 253, 246, 222);
    CHECK_DECODE(tok, "", 50256);

    /* snprintf-like truncation. */
    CHECK_INT_EQ(sotto__tokenizer_decode(tok, some, 2, EOT, out, 6), 11);
    CHECK_STR_EQ(out, "Hello");
    CHECK_INT_EQ(sotto__tokenizer_decode(tok, some, 2, EOT, NULL, 0), 11);
    CHECK_INT_EQ(sotto__tokenizer_decode(tok, some, 0, EOT, out, sizeof out),
                 0);
    CHECK_STR_EQ(out, "");
    /* eot_id = n_vocab skips nothing. */
    {
        static const int sp[] = {50256, 50363};
        CHECK_INT_EQ(sotto__tokenizer_decode(tok, sp, 2, N_VOCAB, out,
                                             sizeof out), 21);
        CHECK_STR_EQ(out, "<|endoftext|><|0.00|>");
    }
    {
        static const int bad1[] = {15496, -1};
        static const int bad2[] = {N_VOCAB};
        CHECK_INT_EQ(sotto__tokenizer_decode(tok, bad1, 2, EOT, out,
                                             sizeof out), SOTTO_EINVAL);
        CHECK_INT_EQ(sotto__tokenizer_decode(tok, bad2, 1, EOT, out,
                                             sizeof out), SOTTO_EINVAL);
        CHECK_INT_EQ(sotto__tokenizer_decode(tok, NULL, 1, EOT, out,
                                             sizeof out), SOTTO_EINVAL);
        CHECK_INT_EQ(sotto__tokenizer_decode(tok, some, 2, -1, out,
                                             sizeof out), SOTTO_EINVAL);
    }
}

static void test_encode(const sotto__tokenizer *tok)
{
    int ids[256];
    char out[512];
    size_t i;

    CHECK_INT_EQ(sotto__tokenizer_can_encode(tok), 1);
    for (i = 0; i < SOTTO__ARRAY_LEN(cases); i++) {
        const struct enc_case *c = &cases[i];
        int n = sotto__tokenizer_encode(tok, c->text, ids, 256);
        int same = n == c->n;

        for (int k = 0; same && k < n; k++)
            same = ids[k] == c->ids[k];
        test_checks++;
        if (!same) {
            test_failures++;
            fprintf(stderr, "%s:%d: encode(\"%s\") gave %d ids:", __FILE__,
                    __LINE__, c->text, n);
            for (int k = 0; k >= 0 && k < n && k < 256; k++)
                fprintf(stderr, " %d", ids[k]);
            fprintf(stderr, "\n");
        }
        /* The count needs no room; a short buffer gets a prefix. */
        CHECK_INT_EQ(sotto__tokenizer_encode(tok, c->text, NULL, 0), c->n);
        if (c->n > 1) {
            int part[2] = {-7, -7};
            CHECK_INT_EQ(sotto__tokenizer_encode(tok, c->text, part, 1), c->n);
            CHECK_INT_EQ(part[0], c->ids[0]);
            CHECK_INT_EQ(part[1], -7);
        }
        /* Round trip, except for the case holding special tokens. */
        if (strstr(c->text, "<|") == NULL) {
            CHECK_INT_EQ(sotto__tokenizer_decode(tok, c->ids, c->n, EOT, out,
                                                 sizeof out),
                         (int)strlen(c->text));
            CHECK_STR_EQ(out, c->text);
        }
    }
    /* A long single word and a long run of spaces stay fast and exact. */
    {
        size_t n = 100000;
        char *s = malloc(n + 2), *back = malloc(n + 2);
        int *many = malloc(sizeof(int) * (n + 1));
        int k;

        CHECK(s && back && many);
        if (s && back && many) {
            memset(s, 'a', n);
            s[n] = 0;
            k = sotto__tokenizer_encode(tok, s, many, (int)n);
            CHECK(k > 0 && k < (int)n);
            CHECK_INT_EQ(sotto__tokenizer_decode(tok, many, k, EOT, back,
                                                 n + 2), (int)n);
            CHECK(strcmp(s, back) == 0);
            memset(s, ' ', n);
            s[n] = 'x';
            s[n + 1] = 0;
            k = sotto__tokenizer_encode(tok, s, many, (int)n);
            CHECK(k > 0);
            CHECK_INT_EQ(sotto__tokenizer_decode(tok, many, k, EOT, back,
                                                 n + 2), (int)n + 1);
            CHECK(strcmp(s, back) == 0);
        }
        free(s);
        free(back);
        free(many);
    }
    CHECK_INT_EQ(sotto__tokenizer_encode(tok, "bad \xff utf8", ids, 256),
                 SOTTO_EINVAL);
    CHECK_INT_EQ(sotto__tokenizer_encode(tok, "\xe6\x97", ids, 256),
                 SOTTO_EINVAL);
    CHECK_INT_EQ(sotto__tokenizer_encode(tok, NULL, ids, 256), SOTTO_EINVAL);
    CHECK_INT_EQ(sotto__tokenizer_encode(tok, "x", NULL, 5), SOTTO_EINVAL);
    CHECK_INT_EQ(sotto__tokenizer_encode(tok, "x", ids, -1), SOTTO_EINVAL);
}

/* Writes every token of tok as a vocabulary.json array (first n ids). */
static void write_vocabulary_json(const sotto__tokenizer *tok, int n,
                                  const char *dir)
{
    size_t cap = 16 << 20, len = 0;
    char *buf = malloc(cap);

    if (buf == NULL)
        exit(2);
    buf[len++] = '[';
    for (int id = 0; id < n; id++) {
        const char *s = sotto__tokenizer_token(tok, id);
        if (len + 2 * strlen(s) + 8 > cap)
            exit(2);
        if (id)
            buf[len++] = ',';
        buf[len++] = '"';
        for (; *s; s++) {
            if (*s == '"' || *s == '\\')
                buf[len++] = '\\';
            buf[len++] = *s;
        }
        buf[len++] = '"';
    }
    buf[len++] = ']';
    write_file(dir, "vocabulary.json", buf, len);
    free(buf);
}

/* Every id has the same string in a and b. */
static int same_tokens(const sotto__tokenizer *a, const sotto__tokenizer *b)
{
    if (sotto__tokenizer_n_vocab(a) != sotto__tokenizer_n_vocab(b))
        return 0;
    for (int id = 0; id < sotto__tokenizer_n_vocab(a); id++)
        if (strcmp(sotto__tokenizer_token(a, id),
                   sotto__tokenizer_token(b, id)) != 0) {
            fprintf(stderr, "token %d differs: \"%s\" vs \"%s\"\n", id,
                    sotto__tokenizer_token(a, id),
                    sotto__tokenizer_token(b, id));
            return 0;
        }
    return 1;
}

/* vocabulary.txt alone (which spells out the timestamps CTranslate2
 * appended) gives every id the same string as tokenizer.json (50363 ids,
 * completed here), and decodes the same; so does vocabulary.json. */
static void test_decode_only(const sotto__tokenizer *full, const char *model)
{
    char dir[64], path[4200], err[256] = "";
    char a[512], b[512];
    sotto__tokenizer *tok = NULL;
    size_t n = 0;
    char *txt;
    int rc;

    snprintf(path, sizeof path, "%s/vocabulary.txt", model);
    txt = test_read_file(path, &n);
    CHECK(txt != NULL);
    if (txt == NULL)
        return;
    make_dir(dir, sizeof dir);

    /* vocabulary.txt alone. */
    write_file(dir, "vocabulary.txt", txt, n);
    rc = sotto__tokenizer_create(dir, N_VOCAB, &tok, err, sizeof err);
    CHECK_INT_EQ(rc, 0);
    if (rc == 0) {
        int ids[4];
        CHECK_INT_EQ(sotto__tokenizer_can_encode(tok), 0);
        CHECK_INT_EQ(sotto__tokenizer_encode(tok, "hi", ids, 4),
                     SOTTO_EUNSUPPORTED);
        CHECK(same_tokens(tok, full));
        CHECK_INT_EQ(sotto__tokenizer_find(tok, "<|notimestamps|>"), 50362);
        CHECK_STR_EQ(sotto__tokenizer_token(tok, 50363), "<|0.00|>");
        for (size_t i = 0; i < SOTTO__ARRAY_LEN(cases); i++) {
            int na = sotto__tokenizer_decode(full, cases[i].ids, cases[i].n,
                                             EOT, a, sizeof a);
            int nb = sotto__tokenizer_decode(tok, cases[i].ids, cases[i].n,
                                             EOT, b, sizeof b);
            CHECK_INT_EQ(na, nb);
            CHECK_STR_EQ(a, b);
        }
        /* vocabulary.json with the same tokens, the whole list and then
         * stopping before the timestamps, which are appended again. */
        write_vocabulary_json(tok, N_VOCAB, dir);
        remove_file(dir, "vocabulary.txt");
        sotto__tokenizer_destroy(tok);
        tok = NULL;
        rc = sotto__tokenizer_create(dir, N_VOCAB, &tok, err, sizeof err);
        CHECK_INT_EQ(rc, 0);
        if (rc == 0) {
            CHECK_INT_EQ(sotto__tokenizer_can_encode(tok), 0);
            CHECK(same_tokens(tok, full));
            write_vocabulary_json(tok, 50363, dir);
            sotto__tokenizer_destroy(tok);
            tok = NULL;
            rc = sotto__tokenizer_create(dir, N_VOCAB, &tok, err, sizeof err);
            CHECK_INT_EQ(rc, 0);
            if (rc == 0)
                CHECK(same_tokens(tok, full));
        }
    }
    sotto__tokenizer_destroy(tok);
    remove_dir(dir);
    free(txt);
}

/* A wrong n_vocab, a folder without vocabulary, a truncated file. */
static void test_real_errors(const char *model)
{
    char dir[64], path[4200];
    size_t n = 0;
    char *json;

    EXPECT_FAIL(model, 50000, SOTTO_EMODEL, "50000");
    EXPECT_FAIL(model, 0, SOTTO_EINVAL, "n_vocab");
    /* MAX_N_VOCAB (tokenizer.c), 2^20: one more is refused as an argument
     * before any file is read. */
    EXPECT_FAIL(model, (1 << 20) + 1, SOTTO_EINVAL, "n_vocab 1048577");
    {
        /* 2^20 itself is taken (ids past the file's are allowed: a model's
         * embedding may be padded beyond its vocabulary). */
        char err[256] = "";
        sotto__tokenizer *tok = NULL;
        CHECK_INT_EQ(sotto__tokenizer_create(model, 1 << 20, &tok, err, sizeof err), 0);
        sotto__tokenizer_destroy(tok);
    }
    EXPECT_FAIL(NULL, N_VOCAB, SOTTO_EINVAL, "");

    make_dir(dir, sizeof dir);
    EXPECT_FAIL(dir, N_VOCAB, SOTTO_EMODEL, "no tokenizer.json");

    snprintf(path, sizeof path, "%s/tokenizer.json", model);
    json = test_read_file(path, &n);
    CHECK(json != NULL);
    if (json != NULL) {
        write_file(dir, "tokenizer.json", json, n / 2);
        EXPECT_FAIL(dir, N_VOCAB, SOTTO_EMODEL, "not valid JSON");
        write_file(dir, "tokenizer.json", json, 0);
        EXPECT_FAIL(dir, N_VOCAB, SOTTO_EMODEL, "not valid JSON");
        free(json);
    }
    /* MAX_FILE_BYTES (tokenizer.c), 256 MiB, and one byte more: a sparse
     * file, refused by its size before it is read. */
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    write_file(dir, "tokenizer.json", "", 0);
    CHECK(truncate(path, (256 << 20) + 1) == 0);
    EXPECT_FAIL(dir, N_VOCAB, SOTTO_EMODEL, "too large (268435457 bytes)");
    unlink(path);
    remove_dir(dir);
}

/* ---- small hand-made vocabularies --------------------------------------- */

/* The GPT-2 character of byte b, as UTF-8 (test-side copy of the table). */
static int byte_char(int b, char *out)
{
    int cp = b, k = 0;

    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) ||
                  x >= 174))
                n++;
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[k++] = (char)cp;
    } else {
        out[k++] = (char)(0xC0 | (cp >> 6));
        out[k++] = (char)(0x80 | (cp & 0x3F));
    }
    out[k] = 0;
    return k;
}

/* A tokenizer.json with the 256 byte tokens (ids 0..255), then `extra`
 * vocab entries, `merges` and `added` spliced in as JSON text. */
static char *small_json(const char *extra, const char *merges,
                        const char *added, const char *pre)
{
    size_t cap = 64 << 10, len = 0;
    char *s = malloc(cap);

    if (s == NULL)
        exit(2);
    len += (size_t)snprintf(s + len, cap - len,
                            "{\"version\":\"1.0\",\"added_tokens\":[%s],"
                            "\"normalizer\":null,\"pre_tokenizer\":%s,"
                            "\"model\":{\"type\":\"BPE\",%s\"vocab\":{",
                            added,
                            pre ? pre : "{\"type\":\"ByteLevel\","
                                        "\"add_prefix_space\":false,"
                                        "\"trim_offsets\":true,"
                                        "\"use_regex\":true}",
                            strstr(merges, "ignore") ? "\"ignore_merges\":true,"
                                                     : "");
    for (int b = 0; b < 256; b++) {
        char ch[4];
        byte_char(b, ch);
        len += (size_t)snprintf(s + len, cap - len, "%s\"%s%s\":%d",
                                b ? "," : "",
                                (ch[0] == '"' || ch[0] == '\\') ? "\\" : "",
                                ch, b);
    }
    snprintf(s + len, cap - len, "%s},\"merges\":[%s]}}", extra,
             strstr(merges, "ignore") ? merges + 6 : merges);
    return s;
}

static void load_small(const char *dir, const char *json, int n_vocab,
                       sotto__tokenizer **tok)
{
    char err[256] = "";
    int rc;

    write_str(dir, "tokenizer.json", json);
    rc = sotto__tokenizer_create(dir, n_vocab, tok, err, sizeof err);
    CHECK_INT_EQ(rc, 0);
    if (rc != 0)
        fprintf(stderr, "  %s\n", err);
}

static void check_encode(const sotto__tokenizer *tok, const char *text,
                         const int *want, int n, int line)
{
    int ids[32], k, same;

    k = sotto__tokenizer_encode(tok, text, ids, 32);
    same = k == n;
    for (int i = 0; same && i < n; i++)
        same = ids[i] == want[i];
    test_checks++;
    if (!same) {
        test_failures++;
        fprintf(stderr, "%s:%d: encode(\"%s\") gave %d ids:", __FILE__, line,
                text, k);
        for (int i = 0; i < k && i < 32; i++)
            fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
}
#define CHECK_ENCODE(tok, text, ...)                                        \
    do {                                                                    \
        static const int want_[] = {__VA_ARGS__};                           \
        check_encode(tok, text, want_, (int)SOTTO__ARRAY_LEN(want_),        \
                     __LINE__);                                             \
    } while (0)

static void test_small(void)
{
    char dir[64], *json, big[1200], q[SOTTO__MAX_TOKEN_BYTES + 2];
    sotto__tokenizer *tok = NULL;

    make_dir(dir, sizeof dir);

    /* Both merge formats; merges apply by rank, not by position. */
    json = small_json(",\"ab\":256,\"bc\":257,\"abc\":258",
                      "\"b c\",[\"a\",\"b\"],[\"a\",\"bc\"]",
                      "{\"id\":259,\"content\":\"<|x|>\",\"special\":true}",
                      NULL);
    load_small(dir, json, 300, &tok);
    free(json);
    if (tok != NULL) {
        CHECK_INT_EQ(sotto__tokenizer_can_encode(tok), 1);
        CHECK_ENCODE(tok, "abc", 258);     /* b c, then a bc */
        CHECK_ENCODE(tok, "abab", 256, 256);
        CHECK_ENCODE(tok, "ab<|x|>c", 256, 259, 'c'); /* ids are bytes */
        CHECK_STR_EQ(sotto__tokenizer_token(tok, 260), "<|0.00|>");
        CHECK_STR_EQ(sotto__tokenizer_token(tok, 299), "<|0.78|>");
        CHECK_INT_EQ(sotto__tokenizer_find(tok, "<|x|>"), 259);
        sotto__tokenizer_destroy(tok);
        tok = NULL;
    }

    /* ignore_merges: a whole word in the vocabulary wins. */
    json = small_json(",\"ab\":256,\"abd\":257", "ignore\"a b\"", "", NULL);
    load_small(dir, json, 258, &tok);
    free(json);
    if (tok != NULL) {
        CHECK_ENCODE(tok, "abd", 257);
        CHECK_ENCODE(tok, "abe", 256, 'e');
        sotto__tokenizer_destroy(tok);
        tok = NULL;
    }

    /* A pipeline encode() does not implement loads for decoding only. */
    json = small_json("", "", "",
                      "{\"type\":\"ByteLevel\",\"add_prefix_space\":true}");
    load_small(dir, json, 256, &tok);
    free(json);
    if (tok != NULL) {
        CHECK_INT_EQ(sotto__tokenizer_can_encode(tok), 0);
        sotto__tokenizer_destroy(tok);
        tok = NULL;
    }

    /* Malformed files. */
    json = small_json(",\"xy\":255", "", "", NULL);
    write_str(dir, "tokenizer.json", json);
    free(json);
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "id 255 twice");
    json = small_json(",\"xy\":300", "", "", NULL);
    write_str(dir, "tokenizer.json", json);
    free(json);
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "\"xy\"");
    json = small_json(",\"xy\":256.5", "", "", NULL);
    write_str(dir, "tokenizer.json", json);
    free(json);
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "\"xy\"");
    json = small_json(",\"xy\":\"256\"", "", "", NULL);
    write_str(dir, "tokenizer.json", json);
    free(json);
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "\"xy\"");
    json = small_json(",\"xy\":257", "", "", NULL);
    write_str(dir, "tokenizer.json", json);
    free(json);
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "no token with id 256");
    json = small_json(",\"!\":256", "", "", NULL);
    write_str(dir, "tokenizer.json", json);
    free(json);
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "twice");
    json = small_json("", "\"a q\"", "", NULL);
    write_str(dir, "tokenizer.json", json);
    free(json);
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "merge 0");
    json = small_json("", "\"a b c\"", "", NULL);
    write_str(dir, "tokenizer.json", json);
    free(json);
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "merge 0");
    json = small_json("", "7", "", NULL);
    write_str(dir, "tokenizer.json", json);
    free(json);
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "merge 0");
    json = small_json("", "", "{\"id\":5,\"content\":\"<|y|>\"}", NULL);
    write_str(dir, "tokenizer.json", json);
    free(json);
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "reuses id 5");
    json = small_json("", "", "{\"id\":256,\"content\":\"a\"}", NULL);
    write_str(dir, "tokenizer.json", json);
    free(json);
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "another id");
    json = small_json("", "", "{\"id\":256}", NULL);
    write_str(dir, "tokenizer.json", json);
    free(json);
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "added_tokens[0]");
    json = small_json("", "", "{\"id\":256,\"content\":\"<|y|>\",\"special\":1}",
                      NULL);
    write_str(dir, "tokenizer.json", json);
    free(json);
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "non-boolean");
    json = small_json("", "", "", NULL);
    write_str(dir, "tokenizer.json", json);
    free(json);
    EXPECT_FAIL(dir, 255, SOTTO_EMODEL, "in [0, 255)");
    memset(q, 'q', sizeof q - 1);
    q[sizeof q - 1] = 0;
    snprintf(big, sizeof big, ",\"%s\":256", q);
    json = small_json(big, "", "", NULL);
    write_str(dir, "tokenizer.json", json);
    free(json);
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "bytes long");
    write_str(dir, "tokenizer.json", "[1,2,3]");
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "no \"model\"");
    write_str(dir, "tokenizer.json",
              "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}");
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "BPE");
    write_str(dir, "tokenizer.json", "{\"model\":{\"vocab\":[]}}");
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "model.vocab");
    write_str(dir, "tokenizer.json", "{\"model\":{\"vocab\":{}}}");
    EXPECT_FAIL(dir, 300, SOTTO_EMODEL, "no tokens");
    remove_file(dir, "tokenizer.json");

    /* vocabulary.txt and vocabulary.json. */
    write_str(dir, "vocabulary.txt", "a\nb\r\nc");
    tok = NULL;
    {
        char err[256];
        int rc = sotto__tokenizer_create(dir, 4, &tok, err, sizeof err);
        CHECK_INT_EQ(rc, 0);
        if (rc == 0) {
            CHECK_STR_EQ(sotto__tokenizer_token(tok, 1), "b");
            CHECK_STR_EQ(sotto__tokenizer_token(tok, 2), "c");
            CHECK_STR_EQ(sotto__tokenizer_token(tok, 3), "<|0.00|>");
            sotto__tokenizer_destroy(tok);
        }
    }
    EXPECT_FAIL(dir, 2, SOTTO_EMODEL, "more than");
    write_file(dir, "vocabulary.txt", "a\nb\0c\n", 6);
    EXPECT_FAIL(dir, 4, SOTTO_EMODEL, "NUL");
    write_str(dir, "vocabulary.txt", "a\n\xc3\n");
    EXPECT_FAIL(dir, 4, SOTTO_EMODEL, "token 1 is not valid UTF-8");
    write_str(dir, "vocabulary.txt", "");
    EXPECT_FAIL(dir, 4, SOTTO_EMODEL, "no tokens");
    write_str(dir, "vocabulary.json", "[\"a\", 2]");
    EXPECT_FAIL(dir, 4, SOTTO_EMODEL, "entry 1 is not a string");
    write_str(dir, "vocabulary.json", "{\"a\": 2}");
    EXPECT_FAIL(dir, 4, SOTTO_EMODEL, "not an array");
    write_str(dir, "vocabulary.json", "[\"a\", \"b\"");
    EXPECT_FAIL(dir, 4, SOTTO_EMODEL, "vocabulary.json is not valid JSON");

    remove_dir(dir);
}

int main(void)
{
    const char *model = test_model_dir();
    char err[256] = "";
    sotto__tokenizer *tok = NULL;
    int rc = sotto__tokenizer_create(model, N_VOCAB, &tok, err, sizeof err);

    CHECK_INT_EQ(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "cannot load the tokenizer of %s: %s\n", model, err);
    } else {
        test_lookups(tok);
        test_token_bytes(tok);
        test_decode(tok);
        test_encode(tok);
        test_decode_only(tok, model);
        sotto__tokenizer_destroy(tok);
    }
    test_real_errors(model);
    test_small();
    return test_main_exit("test_tokenizer");
}
