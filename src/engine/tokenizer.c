/*
 * tokenizer.c - Whisper's byte-level BPE tokenizer (see tokenizer.h).
 *
 * Contract: sotto__tokenizer_create() parses outside data (tokenizer.json,
 * vocabulary.json or vocabulary.txt) and validates all of it: JSON types,
 * ids in [0, n_vocab), every id below the highest one present, no token
 * string or id given twice in tokenizer.json, token strings valid UTF-8
 * without NUL and at most SOTTO__MAX_TOKEN_BYTES long, merges made of
 * vocabulary tokens.  Anything else is SOTTO_EMODEL with a message; it never
 * crashes on bad input.  The result is immutable, so every other function
 * only reads it and is safe to call from many threads at once.
 *
 * Encoding follows HF tokenizers' pipeline for Whisper's tokenizer.json:
 * added tokens found in the text (leftmost-longest) become their ids; the
 * rest is split by the GPT-2 pre-tokenizer regex (PCRE2), each piece's
 * bytes are mapped to the GPT-2 byte alphabet and merged by rank with the
 * same priority-queue order as HF's Word::merge_all.  A tokenizer.json whose
 * pipeline differs in ways this file does not implement (a normalizer,
 * add_prefix_space, an unk token, byte fallback, subword affixes, dropout,
 * lstrip/rstrip/single_word added tokens) still loads, for decoding only:
 * can_encode() is then 0.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "engine/tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "common/common.h"

/* Largest n_vocab accepted; keeps arena offsets within 32 bits. */
#define MAX_N_VOCAB (1 << 20)
/* Largest vocabulary file read, in bytes. */
#define MAX_FILE_BYTES ((size_t)256 << 20)

/* Per-id flags. */
#define TF_MODEL 1u      /* in tokenizer.json's model.vocab (BPE vocab) */
#define TF_ADDED 2u      /* in added_tokens */
#define TF_ADDED_NORM 4u /* an added token with "normalized": true */

/*
 * GPT-2's pre-tokenizer regex,
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with \s spelled out as Unicode White_Space (what HF's Oniguruma matches):
 * PCRE2's \s also matches U+180E, which Unicode no longer counts as space.
 */
#define WS "\\t-\\r\\x{85}\\p{Z}"
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+"
    "|[" WS "]+(?![^" WS "])|[" WS "]+";

struct merge_slot {
    uint64_t key; /* (left id << 32) | right id; EMPTY_KEY when free */
    int32_t rank;
    int32_t new_id;
};
#define EMPTY_KEY UINT64_MAX

struct sotto__tokenizer {
    int n_vocab;
    char *arena; /* every token string, NUL-terminated */
    size_t arena_len, arena_cap;
    uint32_t *off;        /* [n_vocab] offset in arena; UINT32_MAX if unset */
    uint16_t *len;        /* [n_vocab] length in bytes */
    unsigned char *flags; /* [n_vocab] TF_* */
    int32_t *slots;       /* string -> id hash, -1 when free */
    uint32_t slot_mask;

    /* Encoding state, meaningful only when can_encode. */
    int can_encode;
    int ignore_merges;
    int byte_id[256]; /* id of the one-character token of each byte, or -1 */
    struct merge_slot *merges;
    uint32_t merge_mask;
    int *added; /* ids of the added tokens */
    int n_added;
    unsigned char added_first[2][32]; /* first-byte bitmaps per pass */
    pcre2_code *re;
};

/* ------------------------------------------------------------------------
 * GPT-2 byte <-> character mapping and UTF-8 helpers
 */

static int byte_is_printable(int b)
{
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
}

/* The code point that stands for byte b in the GPT-2 alphabet. */
static unsigned byte_to_cp(int b)
{
    if (byte_is_printable(b))
        return (unsigned)b;
    if (b <= 32)
        return 256u + (unsigned)b;           /* 0..32 -> 256..288 */
    if (b <= 160)
        return 289u + (unsigned)(b - 127);   /* 127..160 -> 289..322 */
    return 323u;                             /* 173 */
}

/* The byte that code point cp stands for, or -1. */
static int cp_to_byte(unsigned cp)
{
    if (cp < 256)
        return byte_is_printable((int)cp) ? (int)cp : -1;
    if (cp <= 288)
        return (int)cp - 256;
    if (cp <= 322)
        return (int)cp - 289 + 127;
    if (cp == 323)
        return 173;
    return -1;
}

/*
 * Length of the well-formed UTF-8 sequence at s[0..n), or, when it is
 * ill-formed, minus the length of its maximal prefix that could start a
 * well-formed sequence (at least 1): the unit that Python's and Rust's
 * lossy decoders replace with one U+FFFD.
 */
static int utf8_seq(const unsigned char *s, size_t n, unsigned *cp)
{
    unsigned b = s[0], lo = 0x80, hi = 0xBF, c;
    int need, i;

    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
        c = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        c = b & 0x0F;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        c = b & 0x07;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    } else {
        return -1;
    }
    for (i = 1; i <= need; i++) {
        if ((size_t)i >= n || s[i] < lo || s[i] > hi)
            return -i;
        c = (c << 6) | (s[i] & 0x3Fu);
        lo = 0x80;
        hi = 0xBF;
    }
    *cp = c;
    return need + 1;
}

static int utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    unsigned cp;

    while (i < n) {
        int k = utf8_seq((const unsigned char *)s + i, n - i, &cp);
        if (k < 0)
            return 0;
        i += (size_t)k;
    }
    return 1;
}

/* Writes the UTF-8 encoding of cp (< 0x800) to out; returns its length. */
static int utf8_put_small(unsigned cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* ------------------------------------------------------------------------
 * Token storage and the string -> id hash
 */

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static const char *tok_str(const sotto__tokenizer *tok, int id)
{
    return tok->arena + tok->off[id];
}

/* The id whose string is s[0..n), or -1. */
static int lookup(const sotto__tokenizer *tok, const char *s, size_t n)
{
    uint32_t i = hash_bytes(s, n) & tok->slot_mask;

    for (;; i = (i + 1) & tok->slot_mask) {
        int32_t id = tok->slots[i];
        if (id < 0)
            return -1;
        if (tok->len[id] == n && memcmp(tok_str(tok, id), s, n) == 0)
            return id;
    }
}

/* Makes id the owner of its string unless another id already is; returns
 * that other id, or -1 when id was inserted. */
static int hash_insert(sotto__tokenizer *tok, int id)
{
    const char *s = tok_str(tok, id);
    size_t n = tok->len[id];
    uint32_t i = hash_bytes(s, n) & tok->slot_mask;

    for (;; i = (i + 1) & tok->slot_mask) {
        int32_t other = tok->slots[i];
        if (other < 0) {
            tok->slots[i] = id;
            return -1;
        }
        if (tok->len[other] == n && memcmp(tok_str(tok, other), s, n) == 0)
            return other;
    }
}

/*
 * Validates s[0..n) as the string of token id (from `what`, for messages)
 * and stores it.  The id must not have a string yet.
 */
static int store_token(sotto__tokenizer *tok, int id, const char *s,
                       size_t n, const char *what, char *err, size_t errcap)
{
    if (n > SOTTO__MAX_TOKEN_BYTES)
        return sotto__errf(err, errcap, SOTTO_EMODEL,
                           "%s: token %d is %zu bytes long, more than %d",
                           what, id, n, SOTTO__MAX_TOKEN_BYTES);
    if (memchr(s, 0, n) != NULL)
        return sotto__errf(err, errcap, SOTTO_EMODEL,
                           "%s: token %d contains a NUL byte", what, id);
    if (!utf8_valid(s, n))
        return sotto__errf(err, errcap, SOTTO_EMODEL,
                           "%s: token %d is not valid UTF-8", what, id);
    if (tok->arena_cap - tok->arena_len < n + 1) {
        size_t cap = tok->arena_cap ? tok->arena_cap : 65536;
        char *p;
        while (cap - tok->arena_len < n + 1)
            cap *= 2;
        p = realloc(tok->arena, cap);
        if (p == NULL)
            return sotto__errf(err, errcap, SOTTO_ENOMEM,
                               "out of memory loading the vocabulary");
        tok->arena = p;
        tok->arena_cap = cap;
    }
    memcpy(tok->arena + tok->arena_len, s, n);
    tok->arena[tok->arena_len + n] = 0;
    tok->off[id] = (uint32_t)tok->arena_len;
    tok->len[id] = (uint16_t)n;
    tok->arena_len += n + 1;
    return 0;
}

/* ------------------------------------------------------------------------
 * Merge table
 */

static uint32_t merge_hash(uint64_t key, uint32_t mask)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

static uint64_t merge_key(int a, int b)
{
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

/* The merge slot of pair (a, b), or NULL. */
static const struct merge_slot *merge_find(const sotto__tokenizer *tok,
                                           int a, int b)
{
    uint64_t key = merge_key(a, b);
    uint32_t i = merge_hash(key, tok->merge_mask);

    for (;; i = (i + 1) & tok->merge_mask) {
        const struct merge_slot *m = &tok->merges[i];
        if (m->key == key)
            return m;
        if (m->key == EMPTY_KEY)
            return NULL;
    }
}

/* Adds or overwrites a merge: like HF's HashMap, a later duplicate wins. */
static void merge_put(sotto__tokenizer *tok, int a, int b, int rank,
                      int new_id)
{
    uint64_t key = merge_key(a, b);
    uint32_t i = merge_hash(key, tok->merge_mask);

    for (;; i = (i + 1) & tok->merge_mask) {
        struct merge_slot *m = &tok->merges[i];
        if (m->key == key || m->key == EMPTY_KEY) {
            m->key = key;
            m->rank = rank;
            m->new_id = new_id;
            return;
        }
    }
}

/* ------------------------------------------------------------------------
 * Loading
 */

/* Reads path whole.  Returns 0, 1 when the file does not exist, or a
 * negative code. */
static int read_file(const char *path, char **out, size_t *out_len,
                     char *err, size_t errcap)
{
    FILE *f = NULL;
    char *buf = NULL;
    struct stat st;
    size_t n;
    int rc;

    f = fopen(path, "rb");
    if (f == NULL) {
        if (errno == ENOENT)
            return 1;
        rc = sotto__errf(err, errcap, SOTTO_EIO, "cannot open %s: %s", path,
                         strerror(errno));
        goto fail;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = sotto__errf(err, errcap, SOTTO_EIO, "%s is not a regular file",
                         path);
        goto fail;
    }
    if ((uintmax_t)st.st_size > MAX_FILE_BYTES) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "%s is too large (%jd bytes)", path,
                         (intmax_t)st.st_size);
        goto fail;
    }
    n = (size_t)st.st_size;
    buf = malloc(n + 1);
    if (buf == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory reading %s",
                         path);
        goto fail;
    }
    if (fread(buf, 1, n, f) != n) {
        rc = sotto__errf(err, errcap, SOTTO_EIO, "cannot read %s", path);
        goto fail;
    }
    buf[n] = 0;
    fclose(f);
    *out = buf;
    *out_len = n;
    return 0;

fail:
    free(buf);
    if (f != NULL)
        fclose(f);
    return rc;
}

/* Parses a JSON document; NULL with an SOTTO_EMODEL message on failure. */
static cJSON *parse_json(const char *text, size_t n, const char *name,
                         char *err, size_t errcap)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);

    if (root == NULL) {
        long at = end != NULL && end >= text && end <= text + n
                      ? (long)(end - text) : -1L;
        sotto__errf(err, errcap, SOTTO_EMODEL,
                    "%s is not valid JSON (error near byte %ld)", name, at);
    }
    return root;
}

/* True when item is absent or JSON null. */
static int is_absent(const cJSON *item)
{
    return item == NULL || cJSON_IsNull(item);
}

/* Reads an optional boolean member; -1 when it is present but not a
 * boolean. */
static int get_bool(const cJSON *obj, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (is_absent(v))
        return dflt;
    if (!cJSON_IsBool(v))
        return -1;
    return cJSON_IsTrue(v) ? 1 : 0;
}

/* Reads an id from a JSON number: 0 and *id, or -1. */
static int get_id(const cJSON *v, int n_vocab, int *id)
{
    double d;

    if (!cJSON_IsNumber(v))
        return -1;
    d = v->valuedouble;
    if (!(d >= 0.0 && d < (double)n_vocab) || (double)(int)d != d)
        return -1;
    *id = (int)d;
    return 0;
}

/* True when s is absent, null or the empty string. */
static int empty_string(const cJSON *s)
{
    return is_absent(s) || (cJSON_IsString(s) && s->valuestring[0] == 0);
}

/* Whether the pipeline of root/model is one encode() implements. */
static int encode_supported(const cJSON *root, const cJSON *model)
{
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *type, *dropout;

    if (!is_absent(cJSON_GetObjectItemCaseSensitive(root, "normalizer")))
        return 0;
    if (!cJSON_IsObject(pre))
        return 0;
    type = cJSON_GetObjectItemCaseSensitive(pre, "type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "ByteLevel") != 0)
        return 0;
    if (get_bool(pre, "add_prefix_space", 1) != 0 ||
        get_bool(pre, "use_regex", 1) != 1)
        return 0;
    if (!is_absent(cJSON_GetObjectItemCaseSensitive(model, "unk_token")) ||
        get_bool(model, "byte_fallback", 0) != 0 ||
        !empty_string(cJSON_GetObjectItemCaseSensitive(
            model, "continuing_subword_prefix")) ||
        !empty_string(cJSON_GetObjectItemCaseSensitive(
            model, "end_of_word_suffix")))
        return 0;
    dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (!is_absent(dropout) &&
        !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return 0;
    return 1;
}

static int load_vocab_object(sotto__tokenizer *tok, const cJSON *vocab,
                             int *n_ids, char *err, size_t errcap)
{
    const cJSON *e;
    int rc;

    cJSON_ArrayForEach(e, vocab) {
        int id, other;
        if (e->string == NULL || get_id(e, tok->n_vocab, &id) != 0) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "tokenizer.json: model.vocab entry \"%.40s\" "
                             "is not an id in [0, %d)",
                             e->string ? e->string : "", tok->n_vocab);
            goto fail;
        }
        if (tok->off[id] != UINT32_MAX) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "tokenizer.json: model.vocab gives id %d twice",
                             id);
            goto fail;
        }
        rc = store_token(tok, id, e->string, strlen(e->string),
                         "tokenizer.json model.vocab", err, errcap);
        if (rc < 0)
            goto fail;
        other = hash_insert(tok, id);
        if (other >= 0) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "tokenizer.json: model.vocab has \"%.40s\" "
                             "twice (ids %d and %d)", e->string, other, id);
            goto fail;
        }
        tok->flags[id] |= TF_MODEL;
        if (id + 1 > *n_ids)
            *n_ids = id + 1;
    }
    return 0;

fail:
    return rc;
}

/* Loads added_tokens; *plain is cleared when one needs lstrip, rstrip or
 * single_word, which encode() does not implement. */
static int load_added_tokens(sotto__tokenizer *tok, const cJSON *added,
                             int *n_ids, int *plain, char *err, size_t errcap)
{
    const cJSON *e;
    int i = 0, rc;

    if (is_absent(added))
        return 0;
    if (!cJSON_IsArray(added)) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "tokenizer.json: added_tokens is not an array");
        goto fail;
    }
    tok->added = malloc(sizeof(int) * ((size_t)cJSON_GetArraySize(added) + 1));
    if (tok->added == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM,
                         "out of memory loading the vocabulary");
        goto fail;
    }
    cJSON_ArrayForEach(e, added) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        int id, lstrip, rstrip, single, norm, special;
        size_t n;

        if (!cJSON_IsObject(e) || !cJSON_IsString(content) ||
            get_id(cJSON_GetObjectItemCaseSensitive(e, "id"), tok->n_vocab,
                   &id) != 0) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "tokenizer.json: added_tokens[%d] needs a "
                             "string content and an id in [0, %d)",
                             i, tok->n_vocab);
            goto fail;
        }
        lstrip = get_bool(e, "lstrip", 0);
        rstrip = get_bool(e, "rstrip", 0);
        single = get_bool(e, "single_word", 0);
        norm = get_bool(e, "normalized", 0);
        special = get_bool(e, "special", 0);
        if (lstrip < 0 || rstrip < 0 || single < 0 || norm < 0 ||
            special < 0) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "tokenizer.json: added_tokens[%d] has a "
                             "non-boolean flag", i);
            goto fail;
        }
        if (lstrip || rstrip || single)
            *plain = 0;
        n = strlen(content->valuestring);
        if (tok->off[id] != UINT32_MAX) {
            /* Already in model.vocab (like <|endoftext|>): same string. */
            if (tok->len[id] != n ||
                memcmp(tok_str(tok, id), content->valuestring, n) != 0 ||
                (tok->flags[id] & TF_ADDED)) {
                rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                                 "tokenizer.json: added_tokens[%d] reuses "
                                 "id %d", i, id);
                goto fail;
            }
        } else {
            rc = store_token(tok, id, content->valuestring, n,
                             "tokenizer.json added_tokens", err, errcap);
            if (rc < 0)
                goto fail;
            if (hash_insert(tok, id) >= 0) {
                rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                                 "tokenizer.json: added_tokens[%d] "
                                 "\"%.40s\" already has another id",
                                 i, content->valuestring);
                goto fail;
            }
        }
        tok->flags[id] |= TF_ADDED | (norm ? TF_ADDED_NORM : 0);
        if (n > 0) {
            unsigned char b = (unsigned char)content->valuestring[0];
            tok->added[tok->n_added++] = id;
            tok->added_first[norm][b >> 3] |= (unsigned char)(1u << (b & 7));
        }
        if (id + 1 > *n_ids)
            *n_ids = id + 1;
        i++;
    }
    return 0;

fail:
    return rc;
}

/* The model-vocabulary id of s[0..n), or -1. */
static int model_id(const sotto__tokenizer *tok, const char *s, size_t n)
{
    int id = lookup(tok, s, n);

    return id >= 0 && (tok->flags[id] & TF_MODEL) ? id : -1;
}

static int load_merges(sotto__tokenizer *tok, const cJSON *merges,
                       char *err, size_t errcap)
{
    char both[2 * SOTTO__MAX_TOKEN_BYTES + 1];
    const cJSON *e;
    int n = cJSON_GetArraySize(merges), rank = 0, rc;
    uint32_t cap = 16;

    while (cap < 2u * (uint32_t)n)
        cap *= 2;
    tok->merges = malloc(sizeof(*tok->merges) * cap);
    if (tok->merges == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM,
                         "out of memory loading the merges");
        goto fail;
    }
    for (uint32_t i = 0; i < cap; i++)
        tok->merges[i].key = EMPTY_KEY;
    tok->merge_mask = cap - 1;

    cJSON_ArrayForEach(e, merges) {
        const char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        int ia, ib, inew;

        if (cJSON_IsString(e)) {
            /* Legacy "a b": exactly one space, as HF requires. */
            const char *sp = strchr(e->valuestring, ' ');
            if (sp != NULL && strchr(sp + 1, ' ') == NULL) {
                a = e->valuestring;
                na = (size_t)(sp - a);
                b = sp + 1;
                nb = strlen(b);
            }
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            na = strlen(a);
            b = e->child->next->valuestring;
            nb = strlen(b);
        }
        if (a == NULL) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "tokenizer.json: merge %d is not \"a b\" or "
                             "[\"a\", \"b\"]", rank);
            goto fail;
        }
        ia = model_id(tok, a, na);
        ib = model_id(tok, b, nb);
        inew = -1;
        if (ia >= 0 && ib >= 0) {
            memcpy(both, a, na);
            memcpy(both + na, b, nb);
            inew = model_id(tok, both, na + nb);
        }
        if (inew < 0) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "tokenizer.json: merge %d (\"%.20s\" + "
                             "\"%.20s\") uses or makes a token that is not "
                             "in model.vocab", rank, a, b);
            goto fail;
        }
        merge_put(tok, ia, ib, rank, inew);
        rank++;
    }
    return 0;

fail:
    return rc;
}

static int compile_regex(sotto__tokenizer *tok, char *err, size_t errcap)
{
    int code;
    PCRE2_SIZE at;

    tok->re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED,
                            PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
    if (tok->re == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return sotto__errf(err, errcap, SOTTO_EINTERNAL,
                           "cannot compile the pre-tokenizer regex: %s",
                           (const char *)msg);
    }
    /* JIT is only a speed-up; the interpreter is used when it fails. */
    (void)pcre2_jit_compile(tok->re, PCRE2_JIT_COMPLETE);
    return 0;
}

static int load_tokenizer_json(sotto__tokenizer *tok, const char *text,
                               size_t n, int *n_ids, char *err, size_t errcap)
{
    cJSON *root = NULL;
    const cJSON *model, *type, *vocab, *merges;
    int plain = 1, ignore, rc;

    root = parse_json(text, n, "tokenizer.json", err, errcap);
    if (root == NULL) {
        rc = SOTTO_EMODEL;
        goto fail;
    }
    model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(model)) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "tokenizer.json has no \"model\" object");
        goto fail;
    }
    type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!is_absent(type) &&
        (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE") != 0)) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "tokenizer.json: model.type is not \"BPE\"");
        goto fail;
    }
    vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "tokenizer.json: model.vocab is not an object");
        goto fail;
    }
    rc = load_vocab_object(tok, vocab, n_ids, err, errcap);
    if (rc < 0)
        goto fail;
    rc = load_added_tokens(tok,
                           cJSON_GetObjectItemCaseSensitive(root,
                                                            "added_tokens"),
                           n_ids, &plain, err, errcap);
    if (rc < 0)
        goto fail;

    merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    ignore = get_bool(model, "ignore_merges", 0);
    if (ignore < 0 || (!is_absent(merges) && !cJSON_IsArray(merges))) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "tokenizer.json: model.merges is not an array or "
                         "model.ignore_merges not a boolean");
        goto fail;
    }
    if (cJSON_IsArray(merges)) {
        rc = load_merges(tok, merges, err, errcap);
        if (rc < 0)
            goto fail;
        tok->ignore_merges = ignore;
        tok->can_encode = plain && encode_supported(root, model);
    }
    cJSON_Delete(root);
    return 0;

fail:
    cJSON_Delete(root);
    return rc;
}

static int load_vocabulary_json(sotto__tokenizer *tok, const char *text,
                                size_t n, int *n_ids, char *err,
                                size_t errcap)
{
    cJSON *root = NULL;
    const cJSON *e;
    int id = 0, rc;

    root = parse_json(text, n, "vocabulary.json", err, errcap);
    if (root == NULL) {
        rc = SOTTO_EMODEL;
        goto fail;
    }
    if (!cJSON_IsArray(root)) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "vocabulary.json is not an array of strings");
        goto fail;
    }
    cJSON_ArrayForEach(e, root) {
        if (id >= tok->n_vocab) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "vocabulary.json has more than the model's %d "
                             "tokens", tok->n_vocab);
            goto fail;
        }
        if (!cJSON_IsString(e)) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "vocabulary.json: entry %d is not a string", id);
            goto fail;
        }
        rc = store_token(tok, id, e->valuestring, strlen(e->valuestring),
                         "vocabulary.json", err, errcap);
        if (rc < 0)
            goto fail;
        (void)hash_insert(tok, id); /* a duplicate: find() gives the first */
        id++;
    }
    *n_ids = id;
    cJSON_Delete(root);
    return 0;

fail:
    cJSON_Delete(root);
    return rc;
}

static int load_vocabulary_txt(sotto__tokenizer *tok, const char *text,
                               size_t n, int *n_ids, char *err, size_t errcap)
{
    size_t pos = 0;
    int id = 0, rc;

    while (pos < n) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - line) : n - pos;

        pos += len + (nl ? 1 : 0);
        if (len > 0 && line[len - 1] == '\r')
            len--;
        if (id >= tok->n_vocab) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "vocabulary.txt has more than the model's %d "
                             "tokens", tok->n_vocab);
            goto fail;
        }
        rc = store_token(tok, id, line, len, "vocabulary.txt", err, errcap);
        if (rc < 0)
            goto fail;
        (void)hash_insert(tok, id); /* a duplicate: find() gives the first */
        id++;
    }
    *n_ids = id;
    return 0;

fail:
    return rc;
}

/* Appends <|0.00|>, <|0.02|>, ... from id first up to n_vocab. */
static int add_timestamps(sotto__tokenizer *tok, int first, char *err,
                          size_t errcap)
{
    char buf[64];
    int id, rc;

    for (id = first; id < tok->n_vocab; id++) {
        int k = snprintf(buf, sizeof buf, "<|%.2f|>", (id - first) * 0.02);
        rc = store_token(tok, id, buf, (size_t)k, "timestamps", err, errcap);
        if (rc < 0)
            goto fail;
        (void)hash_insert(tok, id);
    }
    return 0;

fail:
    return rc;
}

int sotto__tokenizer_create(const char *dir, int n_vocab,
                            sotto__tokenizer **out, char *err, size_t errcap)
{
    static const char *const names[3] = {
        "tokenizer.json", "vocabulary.json", "vocabulary.txt"
    };
    sotto__tokenizer *tok = NULL;
    char path[4096];
    char *text = NULL;
    size_t text_len = 0, cap;
    int which, n_ids = 0, id, rc;

    if (out != NULL)
        *out = NULL;
    if (dir == NULL || out == NULL || n_vocab <= 0 || n_vocab > MAX_N_VOCAB) {
        rc = sotto__errf(err, errcap, SOTTO_EINVAL,
                         "tokenizer: bad arguments (n_vocab %d)", n_vocab);
        goto fail;
    }
    tok = calloc(1, sizeof *tok);
    if (tok == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
        goto fail;
    }
    tok->n_vocab = n_vocab;
    for (cap = 16; cap < 2 * (size_t)n_vocab; cap *= 2)
        ;
    tok->off = malloc(sizeof(*tok->off) * (size_t)n_vocab);
    tok->len = calloc((size_t)n_vocab, sizeof(*tok->len));
    tok->flags = calloc((size_t)n_vocab, 1);
    tok->slots = malloc(sizeof(*tok->slots) * cap);
    if (!tok->off || !tok->len || !tok->flags || !tok->slots) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
        goto fail;
    }
    memset(tok->off, 0xFF, sizeof(*tok->off) * (size_t)n_vocab);
    memset(tok->slots, 0xFF, sizeof(*tok->slots) * cap);
    tok->slot_mask = (uint32_t)(cap - 1);

    for (which = 0; which < 3; which++) {
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir,
                             names[which]) >= sizeof path) {
            rc = sotto__errf(err, errcap, SOTTO_EINVAL,
                             "tokenizer: model path is too long");
            goto fail;
        }
        rc = read_file(path, &text, &text_len, err, errcap);
        if (rc < 0)
            goto fail;
        if (rc == 0)
            break;
    }
    if (which == 3) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "%s has no tokenizer.json, vocabulary.json or "
                         "vocabulary.txt", dir);
        goto fail;
    }
    if (which == 0)
        rc = load_tokenizer_json(tok, text, text_len, &n_ids, err, errcap);
    else if (which == 1)
        rc = load_vocabulary_json(tok, text, text_len, &n_ids, err, errcap);
    else
        rc = load_vocabulary_txt(tok, text, text_len, &n_ids, err, errcap);
    if (rc < 0)
        goto fail;
    if (n_ids == 0) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL, "%s has no tokens",
                         names[which]);
        goto fail;
    }
    for (id = 0; id < n_ids; id++) {
        if (tok->off[id] == UINT32_MAX) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "%s has no token with id %d (but has %d)",
                             names[which], id, n_ids - 1);
            goto fail;
        }
    }
    rc = add_timestamps(tok, n_ids, err, errcap);
    if (rc < 0)
        goto fail;

    if (tok->can_encode) {
        for (int b = 0; b < 256; b++) {
            char ch[2];
            int k = utf8_put_small(byte_to_cp(b), ch);
            tok->byte_id[b] = model_id(tok, ch, (size_t)k);
        }
        rc = compile_regex(tok, err, errcap);
        if (rc < 0)
            goto fail;
    }
    free(text);
    *out = tok;
    return 0;

fail:
    free(text);
    sotto__tokenizer_destroy(tok);
    return rc;
}

void sotto__tokenizer_destroy(sotto__tokenizer *tok)
{
    if (tok == NULL)
        return;
    pcre2_code_free(tok->re);
    free(tok->added);
    free(tok->merges);
    free(tok->slots);
    free(tok->flags);
    free(tok->len);
    free(tok->off);
    free(tok->arena);
    free(tok);
}

/* ------------------------------------------------------------------------
 * Lookups and decoding
 */

int sotto__tokenizer_n_vocab(const sotto__tokenizer *tok)
{
    return tok ? tok->n_vocab : SOTTO_EINVAL;
}

int sotto__tokenizer_find(const sotto__tokenizer *tok, const char *s)
{
    if (tok == NULL || s == NULL)
        return -1;
    return lookup(tok, s, strlen(s));
}

const char *sotto__tokenizer_token(const sotto__tokenizer *tok, int id)
{
    if (tok == NULL || id < 0 || id >= tok->n_vocab)
        return NULL;
    return tok_str(tok, id);
}

/* Writes the bytes of token id to dst (room for its string length); when
 * a character is outside the byte alphabet, the whole token's UTF-8 is
 * used, as HF's ByteLevel decoder does.  Returns the count. */
static size_t token_to_bytes(const sotto__tokenizer *tok, int id,
                             unsigned char *dst)
{
    const unsigned char *s = (const unsigned char *)tok_str(tok, id);
    size_t n = tok->len[id], i = 0, k = 0;

    while (i < n) {
        unsigned cp;
        int step = utf8_seq(s + i, n - i, &cp); /* valid: checked at load */
        int b = step > 0 ? cp_to_byte(cp) : -1;
        if (b < 0) {
            memcpy(dst, s, n);
            return n;
        }
        dst[k++] = (unsigned char)b;
        i += (size_t)step;
    }
    return k;
}

int sotto__tokenizer_token_bytes(const sotto__tokenizer *tok, int id,
                                 unsigned char *out, size_t cap)
{
    unsigned char buf[SOTTO__MAX_TOKEN_BYTES];
    size_t n;

    if (tok == NULL || id < 0 || id >= tok->n_vocab ||
        (out == NULL && cap > 0))
        return SOTTO_EINVAL;
    n = token_to_bytes(tok, id, buf);
    if (n > cap)
        n = cap;
    if (n > 0)
        memcpy(out, buf, n);
    return (int)n;
}

int sotto__tokenizer_decode(const sotto__tokenizer *tok, const int *ids,
                            int n, int eot_id, char *out, size_t cap)
{
    static const char repl[3] = { (char)0xEF, (char)0xBF, (char)0xBD };
    unsigned char *raw = NULL;
    size_t total = 0, len = 0, i;
    int rc, k;

    if (tok == NULL || n < 0 || (n > 0 && ids == NULL) || eot_id < 0 ||
        (out == NULL && cap > 0))
        return SOTTO_EINVAL;
    for (k = 0; k < n; k++) {
        if (ids[k] < 0 || ids[k] >= tok->n_vocab)
            return SOTTO_EINVAL;
        if (ids[k] < eot_id)
            total += tok->len[ids[k]];
    }
    raw = malloc(total + 1);
    if (raw == NULL) {
        rc = SOTTO_ENOMEM;
        goto fail;
    }
    total = 0;
    for (k = 0; k < n; k++)
        if (ids[k] < eot_id)
            total += token_to_bytes(tok, ids[k], raw + total);

    /* Lossy UTF-8: each maximal ill-formed subpart becomes U+FFFD. */
    for (i = 0; i < total;) {
        unsigned cp;
        int step = utf8_seq(raw + i, total - i, &cp);
        const char *src = step > 0 ? (const char *)raw + i : repl;
        size_t m = step > 0 ? (size_t)step : 3;

        for (size_t j = 0; j < m; j++, len++)
            if (len + 1 < cap)
                out[len] = src[j];
        i += (size_t)(step > 0 ? step : -step);
    }
    if (len > INT_MAX) {
        rc = SOTTO_EINVAL;
        goto fail;
    }
    if (cap > 0)
        out[len < cap ? len : cap - 1] = 0;
    free(raw);
    return (int)len;

fail:
    if (cap > 0)
        out[0] = 0;
    free(raw);
    return rc;
}

/* ------------------------------------------------------------------------
 * Encoding
 */

int sotto__tokenizer_can_encode(const sotto__tokenizer *tok)
{
    return tok != NULL && tok->can_encode;
}

struct heap_item {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
};

/* Working state of one encode() call. */
struct encoder {
    const sotto__tokenizer *tok;
    int *ids;
    int cap;
    int count;
    pcre2_match_data *md;
    /* Per-piece buffers, grown to the longest piece. */
    size_t room;
    int32_t *sym, *prev, *next;
    struct heap_item *heap;
    char *mapped;
};

static void emit(struct encoder *e, int id)
{
    if (e->count < e->cap)
        e->ids[e->count] = id;
    e->count++;
}

static int heap_less(const struct heap_item *a, const struct heap_item *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(struct heap_item *h, int *n, struct heap_item it)
{
    int i = (*n)++;

    while (i > 0) {
        int p = (i - 1) / 2;
        if (!heap_less(&it, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static struct heap_item heap_pop(struct heap_item *h, int *n)
{
    struct heap_item top = h[0], last = h[--*n];
    int i = 0;

    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c]))
            c++;
        if (!heap_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = last;
    return top;
}

/* Pushes the merge of symbols a and b (positions), if there is one. */
static void push_pair(struct encoder *e, int *nh, int a, int b)
{
    const struct merge_slot *m = merge_find(e->tok, e->sym[a], e->sym[b]);

    if (m != NULL) {
        struct heap_item it = { m->rank, a, m->new_id };
        heap_push(e->heap, nh, it);
    }
}

static int grow(struct encoder *e, size_t n)
{
    size_t room = e->room ? e->room : 64;

    if (n <= e->room)
        return 0;
    while (room < n)
        room *= 2;
    free(e->sym);
    free(e->prev);
    free(e->next);
    free(e->heap);
    free(e->mapped);
    e->sym = malloc(sizeof(int32_t) * room);
    e->prev = malloc(sizeof(int32_t) * room);
    e->next = malloc(sizeof(int32_t) * room);
    e->heap = malloc(sizeof(struct heap_item) * 3 * room);
    e->mapped = malloc(2 * room);
    e->room = room;
    if (!e->sym || !e->prev || !e->next || !e->heap || !e->mapped) {
        e->room = 0;
        return SOTTO_ENOMEM;
    }
    return 0;
}

/* BPE on one pre-tokenized piece s[0..n), like HF's Word::merge_all. */
static int bpe_piece(struct encoder *e, const char *s, size_t n)
{
    const sotto__tokenizer *tok = e->tok;
    int m = 0, nh = 0, i, rc;

    if (n == 0)
        return 0;
    rc = grow(e, n);
    if (rc < 0)
        return rc;
    if (tok->ignore_merges) {
        size_t k = 0;
        int id;
        for (size_t j = 0; j < n; j++)
            k += (size_t)utf8_put_small(byte_to_cp((unsigned char)s[j]),
                                        e->mapped + k);
        id = model_id(tok, e->mapped, k);
        if (id >= 0) {
            emit(e, id);
            return 0;
        }
    }
    /* One symbol per byte; bytes without a token are dropped, as HF does
     * when there is no unk token. */
    for (size_t j = 0; j < n; j++) {
        int id = tok->byte_id[(unsigned char)s[j]];
        if (id < 0)
            continue;
        e->sym[m] = id;
        e->prev[m] = m - 1;
        e->next[m] = m + 1;
        m++;
    }
    if (m == 0)
        return 0;
    e->next[m - 1] = -1;
    for (i = 0; i + 1 < m; i++)
        push_pair(e, &nh, i, i + 1);
    while (nh > 0) {
        struct heap_item top = heap_pop(e->heap, &nh);
        const struct merge_slot *cur;
        int right;

        if (e->sym[top.pos] < 0 || e->next[top.pos] < 0)
            continue;
        right = e->next[top.pos];
        cur = merge_find(tok, e->sym[top.pos], e->sym[right]);
        if (cur == NULL || cur->new_id != top.new_id)
            continue; /* a stale entry */
        e->sym[top.pos] = top.new_id;
        e->sym[right] = -1;
        e->next[top.pos] = e->next[right];
        if (e->next[right] >= 0)
            e->prev[e->next[right]] = top.pos;
        if (e->prev[top.pos] >= 0)
            push_pair(e, &nh, e->prev[top.pos], top.pos);
        if (e->next[top.pos] >= 0)
            push_pair(e, &nh, top.pos, e->next[top.pos]);
    }
    for (i = 0; i >= 0; i = e->next[i])
        emit(e, e->sym[i]);
    return 0;
}

/* Splits s[0..n) with the GPT-2 regex and encodes each piece. */
static int pretokenize(struct encoder *e, const char *s, size_t n)
{
    size_t at = 0;
    int rc;

    while (at < n) {
        PCRE2_SIZE *ov;
        int m = pcre2_match(e->tok->re, (PCRE2_SPTR)s, n, at,
                            PCRE2_NO_UTF_CHECK, e->md, NULL);
        if (m == PCRE2_ERROR_NOMATCH)
            return bpe_piece(e, s + at, n - at);
        if (m < 0)
            return SOTTO_EINTERNAL;
        ov = pcre2_get_ovector_pointer(e->md);
        if (ov[1] <= ov[0] || ov[0] < at || ov[1] > n)
            return SOTTO_EINTERNAL; /* the pattern never matches empty */
        if (ov[0] > at) {
            rc = bpe_piece(e, s + at, ov[0] - at); /* unmatched gap */
            if (rc < 0)
                return rc;
        }
        rc = bpe_piece(e, s + ov[0], ov[1] - ov[0]);
        if (rc < 0)
            return rc;
        at = ov[1];
    }
    return 0;
}

/*
 * Finds the added tokens of pass `pass` (0: not normalized, 1: normalized)
 * in s[0..n), leftmost-longest as HF's AhoCorasick does, and hands the
 * text between them to the next pass.
 */
static int split_added(struct encoder *e, const char *s, size_t n, int pass)
{
    const sotto__tokenizer *tok = e->tok;
    size_t start = 0, p = 0;
    int rc;

    if (pass == 2)
        return pretokenize(e, s, n);
    while (p < n) {
        unsigned char b = (unsigned char)s[p];
        int best = -1;
        size_t best_len = 0;

        if (tok->added_first[pass][b >> 3] & (1u << (b & 7))) {
            for (int i = 0; i < tok->n_added; i++) {
                int id = tok->added[i];
                size_t len = tok->len[id];
                if (((tok->flags[id] & TF_ADDED_NORM) != 0) != pass ||
                    len > n - p || len <= best_len ||
                    memcmp(s + p, tok_str(tok, id), len) != 0)
                    continue;
                best = id;
                best_len = len;
            }
        }
        if (best < 0) {
            p++;
            continue;
        }
        rc = split_added(e, s + start, p - start, pass + 1);
        if (rc < 0)
            return rc;
        emit(e, best);
        p += best_len;
        start = p;
    }
    return split_added(e, s + start, n - start, pass + 1);
}

int sotto__tokenizer_encode(const sotto__tokenizer *tok, const char *text,
                            int *ids, int cap)
{
    struct encoder e;
    size_t n;
    int rc;

    memset(&e, 0, sizeof e);
    if (tok == NULL || text == NULL || cap < 0 || (cap > 0 && ids == NULL))
        return SOTTO_EINVAL;
    if (!tok->can_encode)
        return SOTTO_EUNSUPPORTED;
    n = strlen(text);
    if (n > INT_MAX / 2 || !utf8_valid(text, n))
        return SOTTO_EINVAL;
    e.tok = tok;
    e.ids = ids;
    e.cap = cap;
    e.md = pcre2_match_data_create_from_pattern(tok->re, NULL);
    if (e.md == NULL) {
        rc = SOTTO_ENOMEM;
        goto fail;
    }
    rc = split_added(&e, text, n, 0);
    if (rc < 0)
        goto fail;
    rc = e.count;

fail:
    pcre2_match_data_free(e.md);
    free(e.sym);
    free(e.prev);
    free(e.next);
    free(e.heap);
    free(e.mapped);
    return rc;
}
