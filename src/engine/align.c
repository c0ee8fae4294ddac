/*
 * align.c - word-level timestamps, as faster-whisper 1.2.1 computes them
 * with CTranslate2 4.x (WhisperModel.add_word_timestamps, find_alignment,
 * merge_punctuations; WhisperReplica::align and its DTW).
 *
 * Contract (align.h): sotto__align_words() takes the segments
 * r->segments[first .. r->n_segments) cut from one window that starts at
 * time_offset seconds and holds segment_size real mel frames, and whose
 * encoder output is in st.  It overwrites st's decoder cache, gives every
 * one of those segments its words (an empty list when there is nothing to
 * align), and moves each segment's start and end to its first and last
 * word as faster-whisper does.  Returns 0 or a negative SOTTO_E* code
 * (SOTTO_ENOMEM, or the decoder's); on failure the segments before the
 * failing one already have their new words and the others their old ones.
 *
 * The steps:
 *  1. text = every segment's tokens below <|endoftext|>, in order.  The
 *     decoder runs over sot_sequence + <|notimestamps|> + text +
 *     <|endoftext|>, one token at a time after the sot sequence (the cache
 *     makes that as cheap as one greedy decode), keeping the pre-softmax
 *     cross-attention scores of the model's alignment heads for every
 *     position and the probability of each next text token (softmax over
 *     the ids below <|endoftext|>).
 *  2. Per head: softmax of every row over the first segment_size / 2
 *     encoder positions, normalisation of every column over all rows
 *     (mean 0, variance 1, no epsilon, as CTranslate2's LayerNorm(-2, 0)),
 *     a width-7 median filter along time with reflected edges; then the
 *     mean over heads.  Rows <|notimestamps|> .. last text token form the
 *     matrix that DTW aligns (minimising the sum of the negated values,
 *     with CTranslate2's tie-breaking: diagonal, then up, then left).
 *  3. The first time index of every row is the time (index / 50 s) at
 *     which that token starts.  Tokens are grouped into words as
 *     faster-whisper's split_to_word_tokens does: at UTF-8 character
 *     boundaries, then (except for zh ja th lo my yue) merged until a piece
 *     starts with a space, is punctuation or is special.  A word's
 *     probability is the mean of its tokens' probabilities.
 *  4. Words at sentence ends longer than twice the median word duration
 *     (itself capped at 0.7 s) are clipped, punctuation is merged into its
 *     neighbours, words are handed to segments by token count, and the
 *     first and last words of each segment are reconciled with the
 *     segment's timestamps (the pause heuristic uses the end of the last
 *     word before this window, passed in by the caller).
 *
 * Differences from faster-whisper:
 *  - prepend/append punctuation sets are faster-whisper's defaults.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "engine/align.h"
#include "engine/result.h"

#define TOKENS_PER_SECOND 50        /* 16000 Hz / (160 hop * 2 stride) */
#define FRAMES_PER_SECOND 100       /* mel frames */
#define MEDIAN_FILTER_WIDTH 7
#define MAX_MEDIAN_DURATION 0.7
/* Tokens decoded per batched call of the forced alignment pass; the
 * logits of one batch take SOTTO__ALIGN_BATCH * n_vocab floats (6.6 MB for
 * the English vocabulary). */
#define SOTTO__ALIGN_BATCH 32

static const char PREPEND_PUNCTUATIONS[] = "\"'\xE2\x80\x9C\xC2\xBF([{-";
static const char APPEND_PUNCTUATIONS[] =
    "\"'.\xE3\x80\x82,\xEF\xBC\x8C!\xEF\xBC\x81?\xEF\xBC\x9F:\xEF\xBC\x9A"
    "\xE2\x80\x9D)]}\xE3\x80\x81";
static const char SENTENCE_END_MARKS[] =
    ".\xE3\x80\x82!\xEF\xBC\x81?\xEF\xBC\x9F";
static const char ASCII_PUNCTUATION[] =          /* Python string.punctuation */
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/* One word of the window's alignment. */
typedef struct aword {
    char *text;             /* UTF-8, malloc'd; "" once merged away */
    int first_tok;          /* index of its first token in the sequence */
    int n_tok;              /* tokens it covers */
    double start, end;      /* seconds from the window start */
    double probability;
} aword;

typedef struct wordlist {
    aword *w;
    int n, cap;
} wordlist;

static void wordlist_free(wordlist *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->w[i].text);
    free(l->w);
    l->w = NULL;
    l->n = l->cap = 0;
}

/* Appends a word owning `text`. */
static int wordlist_push(wordlist *l, char *text, int first_tok, int n_tok)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 32;
        aword *nw = realloc(l->w, (size_t)cap * sizeof *nw);
        if (nw == NULL)
            return SOTTO_ENOMEM;
        l->w = nw;
        l->cap = cap;
    }
    memset(&l->w[l->n], 0, sizeof l->w[l->n]);
    l->w[l->n].text = text;
    l->w[l->n].first_tok = first_tok;
    l->w[l->n].n_tok = n_tok;
    l->n++;
    return 0;
}

/* ---- text helpers ---------------------------------------------------------- */

/* Decodes ids[0 .. n) to a fresh NUL-terminated string. */
static int decode_alloc(const sotto__tokenizer *tok, const int *ids, int n,
                        int eot, char **out)
{
    int need = sotto__tokenizer_decode(tok, ids, n, eot, NULL, 0);
    char *s;

    *out = NULL;
    if (need < 0)
        return need;
    if ((s = malloc((size_t)need + 1)) == NULL)
        return SOTTO_ENOMEM;
    sotto__tokenizer_decode(tok, ids, n, eot, s, (size_t)need + 1);
    *out = s;
    return 0;
}

/* Reads one code point of valid UTF-8 (the decoder's output always is);
 * returns its length in bytes. */
static int utf8_next(const unsigned char *s, unsigned *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xE0) == 0xC0 && s[1]) {
        *cp = ((unsigned)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if ((s[0] & 0xF0) == 0xE0 && s[1] && s[2]) {
        *cp = ((unsigned)(s[0] & 0x0F) << 12) | ((unsigned)(s[1] & 0x3F) << 6) |
              (s[2] & 0x3F);
        return 3;
    }
    if ((s[0] & 0xF8) == 0xF0 && s[1] && s[2] && s[3]) {
        *cp = ((unsigned)(s[0] & 0x07) << 18) | ((unsigned)(s[1] & 0x3F) << 12) |
              ((unsigned)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        return 4;
    }
    *cp = 0xFFFD;                     /* not reached for decoder output */
    return 1;
}

/* Code points of s; *fffd = index of the first U+FFFD or -1. */
static int utf8_count(const char *s, int *fffd)
{
    const unsigned char *p = (const unsigned char *)s;
    int n = 0;

    if (fffd != NULL)
        *fffd = -1;
    while (*p) {
        unsigned cp;
        p += utf8_next(p, &cp);
        if (cp == 0xFFFD && fffd != NULL && *fffd < 0)
            *fffd = n;
        n++;
    }
    return n;
}

/* Python's str.isspace() for one code point. */
static int py_isspace(unsigned cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) ||
           cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/*
 * Python's `s.strip() in set` (substring test; the empty string is in
 * every set).  Strips Unicode whitespace from both ends of s.
 */
static int stripped_in(const char *s, const char *set)
{
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *begin = NULL, *end = NULL;
    char buf[64];
    size_t len;

    while (*p) {
        unsigned cp;
        const unsigned char *at = p;
        p += utf8_next(p, &cp);
        if (!py_isspace(cp)) {
            if (begin == NULL)
                begin = at;
            end = p;
        }
    }
    if (begin == NULL)
        return 1;
    len = (size_t)(end - begin);
    if (len >= sizeof buf)
        return 0;                     /* longer than any punctuation set */
    memcpy(buf, begin, len);
    buf[len] = 0;
    return strstr(set, buf) != NULL;
}

static int starts_with_space(const char *s) { return s[0] == ' '; }

static int ends_with_space(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && s[n - 1] == ' ';
}

/* s = a + s (prepend) or s = s + b (append); a and b stay. */
static int concat(char **dst, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);

    if (s == NULL)
        return SOTTO_ENOMEM;
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    free(*dst);
    *dst = s;
    return 0;
}

/* Python's round(x, 2): the decimal nearest to the exact binary value. */
static double round2(double x)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.2f", x);
    return strtod(buf, NULL);
}

/* ---- words from tokens ----------------------------------------------------- */

/*
 * faster-whisper's split_tokens_on_unicode: pieces end where the decoded
 * tokens hold no U+FFFD of their own (one the whole text also has at that
 * place counts as real).  Tokens of a trailing incomplete piece are dropped.
 */
static int split_on_unicode(const sotto__tokenizer *tok, const int *ids,
                            int n, int eot, wordlist *out)
{
    char *full = NULL, *piece = NULL;
    unsigned *full_cp = NULL;
    int n_full, offset = 0, start = 0, rc;

    if ((rc = decode_alloc(tok, ids, n, eot, &full)) != 0)
        goto fail;
    n_full = utf8_count(full, NULL);
    if ((full_cp = malloc(((size_t)n_full + 1) * sizeof *full_cp)) == NULL) {
        rc = SOTTO_ENOMEM;
        goto fail;
    }
    {
        const unsigned char *p = (const unsigned char *)full;
        for (int k = 0; k < n_full; k++)
            p += utf8_next(p, &full_cp[k]);
    }
    for (int i = 0; i < n; i++) {
        int bad, n_cp;
        if ((rc = decode_alloc(tok, ids + start, i - start + 1, eot, &piece)))
            goto fail;
        n_cp = utf8_count(piece, &bad);
        if (bad < 0 || (bad + offset < n_full && full_cp[bad + offset] == 0xFFFD)) {
            if ((rc = wordlist_push(out, piece, start, i - start + 1)) != 0)
                goto fail;
            piece = NULL;
            offset += n_cp;
            start = i + 1;
        } else {
            free(piece);
            piece = NULL;
        }
    }
    rc = 0;
fail:
    free(piece);
    free(full_cp);
    free(full);
    return rc;
}

/* faster-whisper's split_to_word_tokens. */
static int split_words(const sotto__tokenizer *tok, const int *ids, int n,
                       int eot, int by_unicode, wordlist *out)
{
    wordlist sub = { 0 };
    int rc;

    if ((rc = split_on_unicode(tok, ids, n, eot, &sub)) != 0)
        goto fail;
    if (by_unicode) {
        *out = sub;
        return 0;
    }
    for (int i = 0; i < sub.n; i++) {
        aword *s = &sub.w[i];
        int special = ids[s->first_tok] >= eot;
        if (special || starts_with_space(s->text) ||
            stripped_in(s->text, ASCII_PUNCTUATION) || out->n == 0) {
            if ((rc = wordlist_push(out, s->text, s->first_tok, s->n_tok)))
                goto fail;
            s->text = NULL;
        } else {
            aword *last = &out->w[out->n - 1];
            if ((rc = concat(&last->text, last->text, s->text)) != 0)
                goto fail;
            last->n_tok += s->n_tok;
        }
    }
    rc = 0;
fail:
    wordlist_free(&sub);
    return rc;
}

/* faster-whisper's merge_punctuations with its default sets. */
static int merge_punctuations(wordlist *a)
{
    int rc;

    for (int i = a->n - 2, j = a->n - 1; i >= 0; i--) {
        aword *prev = &a->w[i], *next = &a->w[j];
        if (starts_with_space(prev->text) &&
            stripped_in(prev->text, PREPEND_PUNCTUATIONS)) {
            if ((rc = concat(&next->text, prev->text, next->text)) != 0)
                return rc;
            next->n_tok += prev->n_tok;
            prev->text[0] = 0;
            prev->n_tok = 0;
        } else {
            j = i;
        }
    }
    for (int i = 0, j = 1; j < a->n; j++) {
        aword *prev = &a->w[i], *next = &a->w[j];
        if (!ends_with_space(prev->text) &&
            strstr(APPEND_PUNCTUATIONS, next->text) != NULL) {
            if ((rc = concat(&prev->text, prev->text, next->text)) != 0)
                return rc;
            prev->n_tok += next->n_tok;
            next->text[0] = 0;
            next->n_tok = 0;
        } else {
            i = j;
        }
    }
    return 0;
}

/* ---- attention to time ----------------------------------------------------- */

/* Softmax of x[0 .. n) in place, in float like CTranslate2's CPU kernel. */
static void softmax_inplace(float *x, int n)
{
    float mx = x[0], sum = 0.0f;

    for (int i = 1; i < n; i++)
        if (x[i] > mx)
            mx = x[i];
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    for (int i = 0; i < n; i++)
        x[i] *= 1.0f / sum;
}

/* Probability of id under the softmax of logits[0 .. eot). */
static double token_prob(const float *logits, int eot, int id)
{
    float mx = logits[0];
    double sum = 0.0;

    for (int i = 1; i < eot; i++)
        if (logits[i] > mx)
            mx = logits[i];
    for (int i = 0; i < eot; i++)
        sum += exp((double)logits[i] - mx);
    return (float)(exp((double)logits[id] - mx) / sum);
}

/* Median of width w (odd) along x[0 .. n) with reflected edges, as
 * CTranslate2's MedianFilter; rows of n <= w / 2 are copied. */
static void median_filter(const float *x, int n, int w, float *out)
{
    const int rank = w / 2;
    float win[MEDIAN_FILTER_WIDTH];

    if (n <= rank) {
        memcpy(out, x, (size_t)n * sizeof *x);
        return;
    }
    for (int j = 0; j < n; j++) {
        for (int k = -rank; k <= rank; k++) {
            int rd = abs(j + k);
            if (rd >= n)
                rd = n - (rd - n) - 2;
            win[k + rank] = x[rd];
        }
        for (int a = 1; a < w; a++) {          /* insertion sort */
            float v = win[a];
            int b = a - 1;
            while (b >= 0 && win[b] > v) {
                win[b + 1] = win[b];
                b--;
            }
            win[b + 1] = v;
        }
        out[j] = win[rank];
    }
}

/*
 * DTW on the negated x[n][m] (CTranslate2's negative_dtw) and the start
 * time of each row: jump[k] = time index of the first path step on row
 * k (for the path's row changes in order).  Writes *n_jumps entries.
 */
static int dtw_jumps(const float *x, int n, int m, int *jump, int *n_jumps)
{
    const size_t w = (size_t)m + 1;
    float *cost = malloc((size_t)(n + 1) * w * sizeof *cost);
    signed char *trace = malloc((size_t)(n + 1) * w);
    int *path = malloc(((size_t)n + (size_t)m + 2) * 2 * sizeof *path);
    int i, j, len = 0, nj = 0, rc = 0;

    if (cost == NULL || trace == NULL || path == NULL) {
        rc = SOTTO_ENOMEM;
        goto fail;
    }
    for (size_t k = 0; k < (size_t)(n + 1) * w; k++) {
        cost[k] = INFINITY;
        trace[k] = -1;
    }
    cost[0] = 0.0f;
    for (j = 1; j <= m; j++)
        for (i = 1; i <= n; i++) {
            const float c0 = cost[(size_t)(i - 1) * w + j - 1];
            const float c1 = cost[(size_t)(i - 1) * w + j];
            const float c2 = cost[(size_t)i * w + j - 1];
            float c;
            int t;
            if (c0 < c1 && c0 < c2) {
                c = c0;
                t = 0;
            } else if (c1 < c0 && c1 < c2) {
                c = c1;
                t = 1;
            } else {
                c = c2;
                t = 2;
            }
            cost[(size_t)i * w + j] = -x[(size_t)(i - 1) * m + j - 1] + c;
            trace[(size_t)i * w + j] = (signed char)t;
        }
    for (j = 0; j <= m; j++)
        trace[j] = 2;
    for (i = 0; i <= n; i++)
        trace[(size_t)i * w] = 1;

    i = n;
    j = m;
    while (i > 0 || j > 0) {
        int t = trace[(size_t)i * w + j];
        path[2 * len] = i - 1;
        path[2 * len + 1] = j - 1;
        len++;
        if (t == 0) {
            i--;
            j--;
        } else if (t == 1) {
            i--;
        } else {
            j--;
        }
    }
    /* The path runs backwards: walk it forwards and keep the row changes. */
    for (int k = len - 1; k >= 0; k--)
        if (k == len - 1 || path[2 * k] != path[2 * (k + 1)])
            jump[nj++] = path[2 * k + 1];
    *n_jumps = nj;
fail:
    free(cost);
    free(trace);
    free(path);
    return rc;
}

/*
 * Runs the decoder over seq[0 .. L) (n_sot tokens of sot sequence and
 * <|notimestamps|> first), writing the alignment heads' scores to
 * att[h][row][0 .. F) and, for text token k (seq[n_sot + k]),
 * its probability given the tokens before it to probs[k].  The tokens are
 * forced, so they go through in batches of SOTTO__ALIGN_BATCH, each one
 * product per weight with every position's logits.
 */
static int run_decoder(sotto__infer *st, const int *seq, int L, int n_sot,
                       int F, float *att, double *probs)
{
    const struct sotto_model *m = st->m;
    const int H = m->n_align_heads, T = st->T, V = m->n_vocab;
    const int n_text = L - n_sot - 1;
    float *cap_buf = malloc((size_t)H * SOTTO__ALIGN_BATCH * T * sizeof *cap_buf);
    float *logits = malloc((size_t)SOTTO__ALIGN_BATCH * V * sizeof *logits);
    sotto__attn_capture cap;
    int rc = 0;

    if (cap_buf == NULL || logits == NULL) {
        rc = SOTTO_ENOMEM;
        goto fail;
    }
    cap.n_heads = H;
    cap.heads = m->align_heads;
    cap.out = cap_buf;
    sotto__decode_truncate(st, 0);
    for (int pos = 0; pos < L; pos += SOTTO__ALIGN_BATCH) {
        const int n_tok = L - pos < SOTTO__ALIGN_BATCH ? L - pos : SOTTO__ALIGN_BATCH;
        /* Row i's logits predict token pos + i + 1; only text tokens'
         * probabilities are wanted. */
        const int want = pos + n_tok >= n_sot && pos + 1 < n_sot + n_text;

        memset(cap_buf, 0, (size_t)H * n_tok * T * sizeof *cap_buf);
        if ((rc = sotto__decode_rows(st, n_tok, seq + pos, want ? logits : NULL,
                                     &cap)) != 0)
            goto fail;
        for (int h = 0; h < H; h++)
            for (int i = 0; i < n_tok; i++)
                memcpy(att + ((size_t)h * L + pos + i) * F,
                       cap_buf + ((size_t)h * n_tok + i) * T,
                       (size_t)F * sizeof *att);
        for (int i = 0; want && i < n_tok; i++) {
            const int next = pos + i + 1;
            if (next >= n_sot && next < n_sot + n_text)
                probs[next - n_sot] = token_prob(logits + (size_t)i * V,
                                                 m->sp.eot, seq[next]);
        }
    }
fail:
    free(cap_buf);
    free(logits);
    return rc;
}

/* ---- the window ------------------------------------------------------------ */

static int splits_by_unicode(const struct sotto_model *m, const int *sot,
                             int n_sot)
{
    static const char *const codes[] = {
        "<|zh|>", "<|ja|>", "<|th|>", "<|lo|>", "<|my|>", "<|yue|>"
    };
    const char *tok;

    if (!m->multilingual || n_sot < 2)
        return 0;                       /* English */
    if ((tok = sotto__tokenizer_token(m->tok, sot[1])) == NULL)
        return 0;
    for (size_t i = 0; i < SOTTO__ARRAY_LEN(codes); i++)
        if (strcmp(tok, codes[i]) == 0)
            return 1;
    return 0;
}

/* The end of the speech before segment `first` (faster-whisper's
 * last_speech_timestamp). */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/*
 * find_alignment: fills `al` with the window's words, times relative to
 * the window.  Leaves it empty when there is nothing to align.
 */
static int find_alignment(sotto__infer *st, const int *sot, int n_sot,
                          const int *text, int n_text, int segment_size,
                          int by_unicode, wordlist *al)
{
    const struct sotto_model *m = st->m;
    const int H = m->n_align_heads, eot = m->sp.eot;
    const int L = n_sot + 1 + n_text + 1;
    int F = segment_size / 2;
    int *seq = NULL, *jump = NULL, n_jumps = 0, rc = 0;
    float *att = NULL, *mat = NULL, *row = NULL;
    double *probs = NULL;
    wordlist words = { 0 };

    if (F > st->T)
        F = st->T;
    if (n_text == 0 || F < 1 || H < 1)
        return 0;
    seq = malloc((size_t)L * sizeof *seq);
    att = malloc((size_t)H * L * F * sizeof *att);
    mat = calloc((size_t)(n_text + 1) * F, sizeof *mat);
    row = malloc((size_t)F * sizeof *row);
    probs = calloc((size_t)n_text + 1, sizeof *probs);
    jump = malloc(((size_t)n_text + 1 + (size_t)F + 2) * sizeof *jump);
    if (seq == NULL || att == NULL || mat == NULL || row == NULL ||
        probs == NULL || jump == NULL) {
        rc = SOTTO_ENOMEM;
        goto fail;
    }
    memcpy(seq, sot, (size_t)n_sot * sizeof *seq);
    seq[n_sot] = m->sp.no_timestamps;
    memcpy(seq + n_sot + 1, text, (size_t)n_text * sizeof *seq);
    seq[L - 1] = eot;

    if ((rc = run_decoder(st, seq, L, n_sot + 1, F, att, probs)) != 0)
        goto fail;

    for (int h = 0; h < H; h++) {
        float *a = att + (size_t)h * L * F;
        for (int i = 0; i < L; i++)
            softmax_inplace(a + (size_t)i * F, F);
        for (int f = 0; f < F; f++) {          /* LayerNorm over the rows */
            float sum = 0.0f, sq = 0.0f, mean, var, rstd;
            for (int i = 0; i < L; i++) {
                float v = a[(size_t)i * F + f];
                sum += v;
                sq += v * v;
            }
            mean = sum / (float)L;
            var = sq / (float)L - mean * mean;
            if (var < 0.0f)
                var = 0.0f;
            rstd = 1.0f / sqrtf(var);
            for (int i = 0; i < L; i++)
                a[(size_t)i * F + f] = (a[(size_t)i * F + f] - mean) * rstd;
        }
        for (int i = 0; i <= n_text; i++) {
            median_filter(a + (size_t)(n_sot + i) * F, F, MEDIAN_FILTER_WIDTH, row);
            for (int f = 0; f < F; f++)
                mat[(size_t)i * F + f] += row[f];
        }
    }
    for (size_t k = 0; k < (size_t)(n_text + 1) * F; k++)
        mat[k] /= (float)H;
    if ((rc = dtw_jumps(mat, n_text + 1, F, jump, &n_jumps)) != 0)
        goto fail;

    /* Words of text + <|endoftext|> (seq from n_sot + 1 on). */
    if ((rc = split_words(m->tok, seq + n_sot + 1, n_text + 1, eot, by_unicode,
                          &words)) != 0)
        goto fail;
    if (words.n <= 1)
        goto fail;                          /* rc == 0: nothing to align */
    {
        int b = 0;                          /* word boundary, in tokens */
        for (int k = 0; k + 1 < words.n; k++) {
            aword *w = &words.w[k];
            int e = b + w->n_tok, jb = b, je = e;
            double sum = 0.0;
            int cnt = 0;
            if (jb >= n_jumps)
                jb = n_jumps - 1;          /* numpy would raise; cannot */
            if (je >= n_jumps)             /* happen for a finite matrix */
                je = n_jumps - 1;
            w->start = (double)jump[jb] / TOKENS_PER_SECOND;
            w->end = (double)jump[je] / TOKENS_PER_SECOND;
            for (int t = b; t < e && t < n_text; t++, cnt++)
                sum += probs[t];
            w->probability = cnt > 0 ? sum / cnt : 0.0;
            if ((rc = wordlist_push(al, w->text, w->first_tok, w->n_tok)))
                goto fail;
            al->w[al->n - 1].start = w->start;
            al->w[al->n - 1].end = w->end;
            al->w[al->n - 1].probability = w->probability;
            w->text = NULL;
            b = e;
        }
    }
fail:
    wordlist_free(&words);
    free(seq);
    free(att);
    free(mat);
    free(row);
    free(probs);
    free(jump);
    return rc;
}

/*
 * faster-whisper's add_word_timestamps for the segments first .. of one
 * window decoded after sot[0 .. n_sot) (n_sot == 0: guess it).
 * *last_speech_ts is faster-whisper's last_speech_timestamp, in and out.
 */
static int align_segments(sotto__infer *st, sotto__result *r, int first,
                          const int *sot_in, int n_sot_in, double time_offset,
                          int segment_size, double *last_speech_ts)
{
    const struct sotto_model *m = st->m;
    const int n_seg = r->n_segments - first;
    int sot[3], n_sot = 0, n_text = 0, *text = NULL, *seg_text = NULL;
    int rc, word_index = 0;
    double median = 0.0, max_dur = 0.0, offset;
    double *durations = NULL;
    wordlist al = { 0 };
    sotto_word *out = NULL;

    if (n_seg <= 0)
        return 0;
    /* faster-whisper offsets words by seek / frames_per_second. */
    offset = (double)lround(time_offset * FRAMES_PER_SECOND) / FRAMES_PER_SECOND;

    if ((seg_text = calloc((size_t)n_seg, sizeof *seg_text)) == NULL) {
        rc = SOTTO_ENOMEM;
        goto fail;
    }
    for (int i = 0; i < n_seg; i++) {
        const sotto_segment *s = &r->segments[first + i];
        for (int k = 0; k < s->n_tokens; k++)
            seg_text[i] += s->tokens[k] < m->sp.eot;
        n_text += seg_text[i];
    }
    if ((text = malloc(((size_t)n_text + 1) * sizeof *text)) == NULL) {
        rc = SOTTO_ENOMEM;
        goto fail;
    }
    n_text = 0;
    for (int i = 0; i < n_seg; i++) {
        const sotto_segment *s = &r->segments[first + i];
        for (int k = 0; k < s->n_tokens; k++)
            if (s->tokens[k] < m->sp.eot)
                text[n_text++] = s->tokens[k];
    }

    if (n_text > 0) {
        memcpy(sot, sot_in, (size_t)n_sot_in * sizeof *sot);
        n_sot = n_sot_in;
        if ((rc = find_alignment(st, sot, n_sot, text, n_text, segment_size,
                                 splits_by_unicode(m, sot, n_sot), &al)) != 0)
            goto fail;
    }

    /* Median word duration and sentence-boundary clipping. */
    if (al.n > 0) {
        int nd = 0;
        if ((durations = malloc((size_t)al.n * sizeof *durations)) == NULL) {
            rc = SOTTO_ENOMEM;
            goto fail;
        }
        for (int i = 0; i < al.n; i++)
            if (al.w[i].end - al.w[i].start != 0.0)
                durations[nd++] = al.w[i].end - al.w[i].start;
        if (nd > 0) {
            qsort(durations, (size_t)nd, sizeof *durations, cmp_double);
            median = nd % 2 ? durations[nd / 2]
                            : (durations[nd / 2 - 1] + durations[nd / 2]) / 2.0;
        }
        if (median > MAX_MEDIAN_DURATION)
            median = MAX_MEDIAN_DURATION;
        max_dur = median * 2.0;
        if (nd > 0)
            for (int i = 1; i < al.n; i++) {
                aword *w = &al.w[i];
                if (w->end - w->start > max_dur) {
                    if (strstr(SENTENCE_END_MARKS, w->text) != NULL)
                        w->end = w->start + max_dur;
                    else if (strstr(SENTENCE_END_MARKS, al.w[i - 1].text) != NULL)
                        w->start = w->end - max_dur;
                }
            }
        if ((rc = merge_punctuations(&al)) != 0)
            goto fail;
    }

    /* Hand the words to the segments. */
    for (int si = 0; si < n_seg; si++) {
        sotto_segment *seg = &r->segments[first + si];
        int saved = 0, nw = 0;

        if ((out = calloc((size_t)al.n + 1, sizeof *out)) == NULL) {
            rc = SOTTO_ENOMEM;
            goto fail;
        }
        while (word_index < al.n && saved < seg_text[si]) {
            const aword *t = &al.w[word_index];
            if (t->text[0] != 0) {
                sotto_word *w = &out[nw];
                size_t len = strlen(t->text);
                char *s = malloc(len + 1);
                if (s == NULL) {
                    rc = SOTTO_ENOMEM;
                    goto fail;
                }
                memcpy(s, t->text, len + 1);
                w->text = s;
                w->start = round2(offset + t->start);
                w->end = round2(offset + t->end);
                w->probability = (float)t->probability;
                nw++;
            }
            saved += t->n_tok;
            word_index++;
        }
        if (nw > 0) {
            sotto_word *w0 = &out[0], *w1 = nw > 1 ? &out[1] : NULL;
            sotto_word *wl = &out[nw - 1];
            /* The first (and second) word after a pause are not longer
             * than twice the median word duration. */
            if (w0->end - *last_speech_ts > median * 4.0 &&
                (w0->end - w0->start > max_dur ||
                 (w1 != NULL && w1->end - w0->start > max_dur * 2.0))) {
                if (w1 != NULL && w1->end - w1->start > max_dur) {
                    double boundary = w1->end / 2.0 > w1->end - max_dur
                                          ? w1->end / 2.0 : w1->end - max_dur;
                    w0->end = w1->start = boundary;
                }
                w0->start = w0->end - max_dur > 0.0 ? w0->end - max_dur : 0.0;
            }
            /* Prefer the segment's timestamps when the edge words are too
             * long; otherwise the segment takes the words' times. */
            if (seg->start < w0->end && seg->start - 0.5 > w0->start) {
                double v = w0->end - median < seg->start ? w0->end - median
                                                         : seg->start;
                w0->start = v > 0.0 ? v : 0.0;
            } else {
                seg->start = w0->start;
            }
            if (seg->end > wl->start && seg->end + 0.5 < wl->end) {
                wl->end = wl->start + median > seg->end ? wl->start + median
                                                        : seg->end;
            } else {
                seg->end = wl->end;
            }
            *last_speech_ts = seg->end;
        }
        if (nw == 0) {
            free(out);
            out = NULL;
        }
        sotto__result_set_words(r, first + si, out, nw);
        out = NULL;
    }
    rc = 0;
fail:
    if (out != NULL) {
        for (int i = 0; i <= al.n; i++)
            free((char *)out[i].text);
        free(out);
    }
    wordlist_free(&al);
    free(durations);
    free(text);
    free(seg_text);
    return rc;
}

int sotto__align_words(sotto__infer *st, sotto__result *r, int first,
                       const int *sot, int n_sot, double time_offset,
                       int segment_size, double last_speech_ts)
{
    if (st == NULL || r == NULL || first < 0 || first > r->n_segments ||
        segment_size < 0 || n_sot < 0 || n_sot > 3)
        return SOTTO_EINVAL;
    return align_segments(st, r, first, sot, n_sot, time_offset, segment_size,
                          &last_speech_ts);
}
