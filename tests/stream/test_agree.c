/*
 * test_agree.c - LocalAgreement-2 bookkeeping (src/stream/agree.c) on
 * constructed hypotheses: what is committed when, the time filter, the
 * repetition check at the committed boundary, and the endings.
 */
#include "test.h"

#include "sotto.h"
#include "stream/agree.h"

/* Builds a hypothesis from "text@start-end" triples. */
typedef struct hyp {
    sotto__hword w[16];
    int n;
} hyp;

static void add(hyp *h, const char *text, double start, double end)
{
    h->w[h->n].text = (char *)text;
    h->w[h->n].start = start;
    h->w[h->n].end = end;
    h->w[h->n].probability = 0.9f;
    h->n++;
}

static const char *joined(const sotto__wordvec *v, char *buf, size_t cap)
{
    buf[0] = 0;
    for (int i = 0; i < v->n; i++)
        strncat(buf, v->v[i].text, cap - strlen(buf) - 1);
    return buf;
}

static void test_same_text(void)
{
    CHECK(sotto__agree_same_text(" Hello,", "hello"));
    CHECK(sotto__agree_same_text(" Americans.", " americans"));
    CHECK(!sotto__agree_same_text(" cat", " cats"));
    CHECK(!sotto__agree_same_text(" ask", " asked"));
    CHECK(sotto__agree_same_text(" don't", "dont"));
    CHECK(!sotto__agree_same_text(" é", " e"));
}

static void test_two_passes_agree(void)
{
    sotto__agree a;
    sotto__wordvec out = { 0 };
    hyp h1 = { .n = 0 }, h2 = { .n = 0 }, h3 = { .n = 0 };
    char buf[256];

    sotto__agree_init(&a);
    add(&h1, " And", 0.0, 0.3);
    add(&h1, " so", 0.3, 0.6);
    add(&h1, " my", 0.7, 0.9);
    CHECK_INT_EQ(sotto__agree_insert(&a, h1.w, h1.n, 0, &out), 0);
    CHECK_INT_EQ(out.n, 0);                 /* one pass commits nothing */
    CHECK_INT_EQ(a.pending.n, 3);

    add(&h2, " And", 0.0, 0.3);
    add(&h2, " so,", 0.3, 0.62);
    add(&h2, " my", 0.7, 0.9);
    add(&h2, " fellow", 0.9, 1.3);
    CHECK_INT_EQ(sotto__agree_insert(&a, h2.w, h2.n, 0, &out), 0);
    CHECK_STR_EQ(joined(&out, buf, sizeof buf), " And so, my");
    CHECK_INT_EQ(a.pending.n, 1);
    CHECK(fabs(a.last_end - 0.9) < 1e-9);

    /* The third pass re-transcribes the committed words; they are
     * filtered by time and only " fellow Americans" is new. */
    sotto__wordvec_clear(&out);
    add(&h3, " And", 0.0, 0.3);
    add(&h3, " so", 0.3, 0.6);
    add(&h3, " my", 0.7, 0.9);
    add(&h3, " fellow", 0.92, 1.3);
    add(&h3, " Americans", 1.3, 2.0);
    CHECK_INT_EQ(sotto__agree_insert(&a, h3.w, h3.n, 0, &out), 0);
    CHECK_STR_EQ(joined(&out, buf, sizeof buf), " fellow");
    CHECK_INT_EQ(a.pending.n, 1);
    CHECK_STR_EQ(a.pending.v[0].text, " Americans");

    /* The end of the utterance commits the rest. */
    sotto__wordvec_clear(&out);
    CHECK_INT_EQ(sotto__agree_insert(&a, h3.w, h3.n, 1, &out), 0);
    CHECK_STR_EQ(joined(&out, buf, sizeof buf), " Americans");
    CHECK_INT_EQ(a.pending.n, 0);
    CHECK_INT_EQ(a.committed.n, 5);
    sotto__wordvec_free(&out);
    sotto__agree_free(&a);
}

static void test_disagreement_and_shift(void)
{
    sotto__agree a;
    sotto__wordvec out = { 0 };
    hyp h1 = { .n = 0 }, h2 = { .n = 0 }, h3 = { .n = 0 };

    sotto__agree_init(&a);
    add(&h1, " the", 0.0, 0.2);
    add(&h1, " cat", 0.2, 0.5);
    sotto__agree_insert(&a, h1.w, h1.n, 0, &out);
    /* A changed first word stops the prefix at once. */
    add(&h2, " a", 0.0, 0.2);
    add(&h2, " cat", 0.2, 0.5);
    sotto__agree_insert(&a, h2.w, h2.n, 0, &out);
    CHECK_INT_EQ(out.n, 0);
    /* The same text 1.5 s later is another word, not agreement. */
    add(&h3, " a", 1.5, 1.7);
    add(&h3, " cat", 1.7, 2.0);
    sotto__agree_insert(&a, h3.w, h3.n, 0, &out);
    CHECK_INT_EQ(out.n, 0);
    sotto__wordvec_free(&out);
    sotto__agree_free(&a);
}

static void test_repetition_at_boundary(void)
{
    sotto__agree a;
    sotto__wordvec out = { 0 };
    hyp h1 = { .n = 0 }, h2 = { .n = 0 }, h3 = { .n = 0 };
    char buf[256];

    sotto__agree_init(&a);
    add(&h1, " ask", 1.0, 1.3);
    add(&h1, " not", 1.3, 1.6);
    sotto__agree_insert(&a, h1.w, h1.n, 0, &out);
    sotto__agree_insert(&a, h1.w, h1.n, 0, &out);
    CHECK_INT_EQ(out.n, 2);
    /* After a cut the model hears " not" again, placed after the
     * committed end: the repeated word is dropped, the rest kept. */
    sotto__wordvec_clear(&out);
    add(&h2, " not", 1.62, 1.8);
    add(&h2, " what", 1.8, 2.0);
    sotto__agree_insert(&a, h2.w, h2.n, 0, &out);
    CHECK_INT_EQ(out.n, 0);
    CHECK_INT_EQ(a.pending.n, 1);
    CHECK_STR_EQ(a.pending.v[0].text, " what");
    add(&h3, " not", 1.62, 1.8);
    add(&h3, " what", 1.8, 2.0);
    add(&h3, " your", 2.0, 2.2);
    sotto__agree_insert(&a, h3.w, h3.n, 0, &out);
    CHECK_STR_EQ(joined(&out, buf, sizeof buf), " what");

    /* Forgetting the words before a cut disables the check for them. */
    sotto__agree_forget_before(&a, 1.6);
    CHECK_INT_EQ(a.committed.n, 1);
    CHECK_STR_EQ(a.committed.v[0].text, " what");
    sotto__wordvec_free(&out);
    sotto__agree_free(&a);
}

static void test_commit_pending_and_reset(void)
{
    sotto__agree a;
    sotto__wordvec out = { 0 };
    hyp h1 = { .n = 0 };
    char buf[256];

    sotto__agree_init(&a);
    add(&h1, " hello", 5.0, 5.4);
    add(&h1, " world", 5.4, 5.9);
    sotto__agree_insert(&a, h1.w, h1.n, 0, &out);
    CHECK_INT_EQ(out.n, 0);
    CHECK_INT_EQ(sotto__agree_commit_pending(&a, &out), 0);
    CHECK_STR_EQ(joined(&out, buf, sizeof buf), " hello world");
    CHECK_INT_EQ(a.pending.n, 0);
    sotto__agree_reset(&a);
    CHECK_INT_EQ(a.committed.n, 0);
    CHECK(fabs(a.last_end - 5.9) < 1e-9);   /* kept across utterances */
    /* Nothing at or before the committed end is committed again. */
    sotto__wordvec_clear(&out);
    sotto__agree_insert(&a, h1.w, h1.n, 1, &out);
    CHECK_INT_EQ(out.n, 0);
    sotto__wordvec_free(&out);
    sotto__agree_free(&a);
}

/* Where a looping decode starts to repeat itself. */
static void test_loop_start(void)
{
    static const char *loop[] = { " And", " so", " my", " fellow", " Americans.",
                                  " And", " so", " my", " fellow", " Americans.",
                                  " And", " so" };
    static const char *stutter[] = { " no", " no,", " No.", " no" };
    static const char *clean[] = { " ask", " not", " what", " your", " country",
                                   " can", " do", " for", " you,", " ask",
                                   " what", " you" };
    hyp h = { .n = 0 };

    for (int i = 0; i < 12; i++)
        add(&h, loop[i], i * 0.2, i * 0.2 + 0.2);
    CHECK_INT_EQ(sotto__agree_loop_start(h.w, h.n), 5);
    h.n = 0;
    for (int i = 0; i < 4; i++)
        add(&h, stutter[i], i * 0.2, i * 0.2 + 0.2);
    CHECK_INT_EQ(sotto__agree_loop_start(h.w, h.n), 1);
    /* A word said again further on is no tandem repeat. */
    h.n = 0;
    for (int i = 0; i < 12; i++)
        add(&h, clean[i], i * 0.2, i * 0.2 + 0.2);
    CHECK_INT_EQ(sotto__agree_loop_start(h.w, h.n), 12);
    CHECK_INT_EQ(sotto__agree_loop_start(h.w, 0), 0);
    CHECK_INT_EQ(sotto__agree_loop_start(h.w, 1), 1);
}

int main(void)
{
    test_same_text();
    test_two_passes_agree();
    test_disagreement_and_shift();
    test_repetition_at_boundary();
    test_commit_pending_and_reset();
    test_loop_start();
    return test_main_exit("test_agree");
}
