/*
 * agree.c - LocalAgreement-2 over word hypotheses (see agree.h for the
 * policy and its source).
 *
 * Everything here is plain bookkeeping on small word vectors: a pass gives
 * a few dozen words at most, so linear scans are the right tool.
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "stream/agree.h"

int sotto__wordvec_push(sotto__wordvec *w, double start, double end,
                        const char *text, float probability)
{
    char *copy;

    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 32;
        sotto__hword *nv = realloc(w->v, (size_t)cap * sizeof *nv);
        if (nv == NULL)
            return SOTTO_ENOMEM;
        w->v = nv;
        w->cap = cap;
    }
    copy = strdup(text != NULL ? text : "");
    if (copy == NULL)
        return SOTTO_ENOMEM;
    w->v[w->n].start = start;
    w->v[w->n].end = end;
    w->v[w->n].text = copy;
    w->v[w->n].probability = probability;
    w->n++;
    return 0;
}

void sotto__wordvec_drop_front(sotto__wordvec *w, int k)
{
    if (k <= 0)
        return;
    if (k > w->n)
        k = w->n;
    for (int i = 0; i < k; i++)
        free(w->v[i].text);
    memmove(w->v, w->v + k, (size_t)(w->n - k) * sizeof *w->v);
    w->n -= k;
}

void sotto__wordvec_clear(sotto__wordvec *w)
{
    sotto__wordvec_drop_front(w, w->n);
}

void sotto__wordvec_free(sotto__wordvec *w)
{
    sotto__wordvec_clear(w);
    free(w->v);
    w->v = NULL;
    w->cap = 0;
}

void sotto__agree_init(sotto__agree *a)
{
    memset(a, 0, sizeof *a);
    a->last_end = -1e9;
}

void sotto__agree_free(sotto__agree *a)
{
    sotto__wordvec_free(&a->pending);
    sotto__wordvec_free(&a->committed);
}

/* The next byte of s that counts for comparison, lower-cased; skips
 * spaces and ASCII punctuation.  Bytes >= 0x80 (other scripts) count. */
static const char *next_significant(const char *s)
{
    while (*s != 0 && ((unsigned char)*s < 0x80) &&
           (isspace((unsigned char)*s) || ispunct((unsigned char)*s)))
        s++;
    return s;
}

int sotto__agree_same_text(const char *a, const char *b)
{
    for (;;) {
        a = next_significant(a);
        b = next_significant(b);
        if (*a == 0 || *b == 0)
            return *a == *b;
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return 0;
        a++;
        b++;
    }
}

int sotto__agree_loop_start(const sotto__hword *w, int n)
{
    for (int i = 1; i < n; i++)
        for (int len = 1; len <= i && i + len <= n; len++) {
            int same = 1;
            for (int j = 0; same && j < len; j++)
                same = sotto__agree_same_text(w[i - len + j].text, w[i + j].text);
            if (same)
                return i;
        }
    return n;
}

static int same_word(const sotto__hword *x, const sotto__hword *y)
{
    return sotto__agree_same_text(x->text, y->text) &&
           fabs(x->start - y->start) <= SOTTO__AGREE_MAX_SHIFT;
}

/* Moves words[0 .. k) of *from into out and a->committed. */
static int commit(sotto__agree *a, const sotto__hword *w, int k,
                  sotto__wordvec *out)
{
    int rc;

    for (int i = 0; i < k; i++) {
        if ((rc = sotto__wordvec_push(out, w[i].start, w[i].end, w[i].text,
                                      w[i].probability)) != 0 ||
            (rc = sotto__wordvec_push(&a->committed, w[i].start, w[i].end,
                                      w[i].text, w[i].probability)) != 0)
            return rc;
        if (w[i].end > a->last_end)
            a->last_end = w[i].end;
    }
    return 0;
}

int sotto__agree_insert(sotto__agree *a, const sotto__hword *hyp, int n,
                        int commit_all, sotto__wordvec *out)
{
    sotto__wordvec fresh = { 0 };
    int first = 0, k = 0, rc = 0;

    /* Words that begin before the committed text ends were credited
     * already. */
    while (first < n && hyp[first].start <= a->last_end - 0.1)
        first++;
    hyp += first;
    n -= first;

    /* A hypothesis that starts right at the committed boundary may repeat
     * its last words; drop the longest such run. */
    if (n > 0 && a->committed.n > 0 && fabs(hyp[0].start - a->last_end) < 1.0) {
        const sotto__wordvec *c = &a->committed;
        for (int len = SOTTO__AGREE_MAX_NGRAM; len >= 1; len--) {
            int same = len <= c->n && len <= n;
            for (int i = 0; same && i < len; i++)
                same = sotto__agree_same_text(c->v[c->n - len + i].text,
                                              hyp[i].text);
            if (same) {
                hyp += len;
                n -= len;
                break;
            }
        }
    }

    while (k < n && k < a->pending.n && same_word(&hyp[k], &a->pending.v[k]))
        k++;
    if (commit_all)
        k = n;
    if ((rc = commit(a, hyp, k, out)) != 0)
        goto fail;
    for (int i = k; i < n; i++)
        if ((rc = sotto__wordvec_push(&fresh, hyp[i].start, hyp[i].end,
                                      hyp[i].text, hyp[i].probability)) != 0)
            goto fail;
    sotto__wordvec_free(&a->pending);
    a->pending = fresh;
    return 0;
fail:
    sotto__wordvec_free(&fresh);
    return rc;
}

int sotto__agree_commit_pending(sotto__agree *a, sotto__wordvec *out)
{
    int rc = commit(a, a->pending.v, a->pending.n, out);
    sotto__wordvec_clear(&a->pending);
    return rc;
}

void sotto__agree_forget_before(sotto__agree *a, double t)
{
    int k = 0;
    while (k < a->committed.n && a->committed.v[k].end <= t)
        k++;
    sotto__wordvec_drop_front(&a->committed, k);
}

void sotto__agree_reset(sotto__agree *a)
{
    sotto__wordvec_clear(&a->pending);
    sotto__wordvec_clear(&a->committed);
}
