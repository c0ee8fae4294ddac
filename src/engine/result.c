/*
 * result.c - building, reading and freeing a sotto_result.
 *
 * Every segment's text, tokens and words are separate allocations owned by
 * the result; the public accessors hand out const pointers into it, valid
 * until sotto_result_destroy().
 */
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "engine/result.h"

sotto__result *sotto__result_create(double duration)
{
    sotto__result *r = calloc(1, sizeof *r);
    if (r != NULL)
        r->duration = duration;
    return r;
}

static void free_words(sotto_segment *s)
{
    for (int i = 0; i < s->n_words; i++)
        free((char *)s->words[i].text);
    free((sotto_word *)s->words);
    s->words = NULL;
    s->n_words = 0;
}

static void free_segment(sotto_segment *s)
{
    free((char *)s->text);
    free((int *)s->tokens);
    free_words(s);
}

int sotto__result_add(sotto__result *r, const struct sotto_model *m,
                      const int *tokens, int n, double start, double end)
{
    sotto_segment *s;
    int need;
    char *text = NULL;
    int *toks = NULL;

    if (r->n_segments == r->cap) {
        int cap = r->cap ? r->cap * 2 : 16;
        sotto_segment *ns = realloc(r->segments, (size_t)cap * sizeof *ns);
        if (ns == NULL)
            return SOTTO_ENOMEM;
        r->segments = ns;
        r->cap = cap;
    }
    need = sotto__tokenizer_decode(m->tok, tokens, n, m->sp.eot, NULL, 0);
    if (need < 0)
        return need;
    text = malloc((size_t)need + 1);
    toks = malloc(((size_t)n + 1) * sizeof *toks);
    if (text == NULL || toks == NULL) {
        free(text);
        free(toks);
        return SOTTO_ENOMEM;
    }
    sotto__tokenizer_decode(m->tok, tokens, n, m->sp.eot, text, (size_t)need + 1);
    memcpy(toks, tokens, (size_t)n * sizeof *toks);
    s = &r->segments[r->n_segments++];
    memset(s, 0, sizeof *s);
    s->start = start;
    s->end = end;
    s->text = text;
    s->tokens = toks;
    s->n_tokens = n;
    return 0;
}

void sotto__result_drop(sotto__result *r, int i)
{
    if (i < 0 || i >= r->n_segments)
        return;
    free_segment(&r->segments[i]);
    memmove(&r->segments[i], &r->segments[i + 1],
            (size_t)(r->n_segments - i - 1) * sizeof *r->segments);
    r->n_segments--;
}

void sotto__result_set_words(sotto__result *r, int i, sotto_word *words,
                             int n)
{
    free_words(&r->segments[i]);
    r->segments[i].words = words;
    r->segments[i].n_words = n;
}

int sotto__result_finish(sotto__result *r)
{
    size_t len = 0, off = 0;

    for (int i = 0; i < r->n_segments; i++)
        len += strlen(r->segments[i].text);
    free(r->text);
    r->text = malloc(len + 1);
    if (r->text == NULL)
        return SOTTO_ENOMEM;
    for (int i = 0; i < r->n_segments; i++) {
        size_t l = strlen(r->segments[i].text);
        memcpy(r->text + off, r->segments[i].text, l);
        off += l;
    }
    r->text[off] = 0;
    return 0;
}

int sotto_result_n_segments(const sotto_result *r)
{
    return r ? r->n_segments : 0;
}

const sotto_segment *sotto_result_segment(const sotto_result *r, int i)
{
    if (r == NULL || i < 0 || i >= r->n_segments)
        return NULL;
    return &r->segments[i];
}

double sotto_result_duration(const sotto_result *r)
{
    return r ? r->duration : 0.0;
}

const char *sotto_result_text(const sotto_result *r)
{
    return r && r->text ? r->text : "";
}

void sotto_result_destroy(sotto_result *r)
{
    if (r == NULL)
        return;
    for (int i = 0; i < r->n_segments; i++)
        free_segment(&r->segments[i]);
    free(r->segments);
    free(r->text);
    free(r);
}
