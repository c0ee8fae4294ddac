/*
 * test_decode.c - the decoding rules on constructed cases: every logit
 * filter (suppression, suppress_blank, each timestamp rule) and greedy
 * search against beam search on a small hand-made language model where
 * the two must disagree.
 *
 * The constructed vocabulary has 24 ids:
 *   0..9 text, 10 <|endoftext|>, 11 <|startoftranscript|>, 12 <|startofprev|>,
 *   13 <|startoflm|>, 14 <|transcribe|>, 15 <|translate|>, 16 <|nospeech|>,
 *   17 <|notimestamps|>, 18..23 timestamps <|0.00|> .. <|0.10|>.
 */
#include <math.h>
#include <string.h>

#include "test.h"
#include "engine/decode.h"

enum { V = 24, EOT = 10, SOT = 11, NOTS = 17, TB = 18, SPACE = 0 };

static void make_model(struct sotto_model *m)
{
    memset(m, 0, sizeof *m);
    m->n_vocab = V;
    m->sp.eot = EOT;
    m->sp.sot = SOT;
    m->sp.sot_prev = 12;
    m->sp.sot_lm = 13;
    m->sp.transcribe = 14;
    m->sp.translate = 15;
    m->sp.no_speech = 16;
    m->sp.no_timestamps = NOTS;
    m->sp.timestamp_begin = TB;
    m->sp.space = SPACE;
    m->n_suppress = 1;
    m->suppress[0] = 9;            /* a "non-speech" symbol */
    m->n_suppress_begin = 2;
    m->suppress_begin[0] = SPACE;
    m->suppress_begin[1] = EOT;
}

static sotto__gen_opts opts(int timestamps)
{
    sotto__gen_opts o;
    memset(&o, 0, sizeof o);
    o.beam_size = 1;
    o.best_of = 1;
    o.patience = 1.0f;
    o.length_penalty = 1.0f;
    o.suppress_blank = 1;
    o.without_timestamps = !timestamps;
    o.max_initial_timestamp_index = 2;
    o.max_new_tokens = 16;
    return o;
}

static int masked(const float *l, int i) { return l[i] == -INFINITY; }

static void flat(float *l)
{
    for (int i = 0; i < V; i++)
        l[i] = 0.0f;
}

static void test_filters(void)
{
    struct sotto_model m;
    sotto__gen_opts o = opts(1);
    float l[V];

    make_model(&m);

    /* First step: only timestamps up to max_initial (index 2) survive. */
    flat(l);
    sotto__apply_filters(&m, l, NULL, 0, &o);
    for (int i = 0; i < TB; i++)
        CHECK(masked(l, i));
    CHECK(!masked(l, TB) && !masked(l, TB + 1) && !masked(l, TB + 2));
    CHECK(masked(l, TB + 3) && masked(l, TB + 5));

    /* After one timestamp (it counts as a pair): text must follow. */
    {
        const int seq[] = { TB + 1 };
        flat(l);
        sotto__apply_filters(&m, l, seq, 1, &o);
        for (int i = TB; i < V; i++)
            CHECK(masked(l, i));
        CHECK(!masked(l, 3) && !masked(l, EOT));
        CHECK(masked(l, 9));                  /* suppress_ids */
        CHECK(masked(l, NOTS) && masked(l, SOT) && masked(l, 16));
        CHECK(!masked(l, SPACE));             /* blank only at the start */
    }
    /* After "ts text": timestamps must be later than the open one. */
    {
        const int seq[] = { TB + 1, 5 };
        flat(l);
        for (int i = TB; i < V; i++)
            l[i] = -5.0f;                 /* keep the forcing rule out */
        sotto__apply_filters(&m, l, seq, 2, &o);
        CHECK(masked(l, TB) && masked(l, TB + 1));
        CHECK(!masked(l, TB + 2) && !masked(l, 4) && !masked(l, EOT));
    }
    /* After "ts text ts": no text; the closing value may repeat; the end
     * is allowed. */
    {
        const int seq[] = { TB + 1, 5, TB + 3 };
        flat(l);
        for (int i = TB; i < V; i++)
            l[i] = -5.0f;                 /* keep the forcing rule out */
        sotto__apply_filters(&m, l, seq, 3, &o);
        for (int i = 0; i < EOT; i++)
            CHECK(masked(l, i));
        CHECK(!masked(l, EOT));
        CHECK(masked(l, TB + 2) && !masked(l, TB + 3) && !masked(l, TB + 4));
    }
    /* After two timestamps in a row: text (or the end) must follow. */
    {
        const int seq[] = { TB + 1, 5, TB + 3, TB + 3 };
        flat(l);
        sotto__apply_filters(&m, l, seq, 4, &o);
        for (int i = TB; i < V; i++)
            CHECK(masked(l, i));
        CHECK(!masked(l, 2) && !masked(l, EOT));
    }
    /* When the timestamps together outweigh every text token, a timestamp
     * is forced. */
    {
        const int seq[] = { TB, 5 };
        flat(l);
        l[3] = 1.0f;                       /* best text: e^1 */
        for (int i = TB + 1; i < V; i++)
            l[i] = 0.5f;                   /* 5 timestamps: 5 e^0.5 > e^1 */
        sotto__apply_filters(&m, l, seq, 2, &o);
        for (int i = 0; i < TB; i++)
            CHECK(masked(l, i));
        CHECK(!masked(l, TB + 1));
        /* ...but not when text wins. */
        flat(l);
        l[3] = 4.0f;
        for (int i = TB + 1; i < V; i++)
            l[i] = 0.5f;
        sotto__apply_filters(&m, l, seq, 2, &o);
        CHECK(!masked(l, 3));
    }
    /* Without timestamps: only suppression and suppress_blank apply. */
    {
        sotto__gen_opts nt = opts(0);
        flat(l);
        sotto__apply_filters(&m, l, NULL, 0, &nt);
        CHECK(masked(l, SPACE) && masked(l, EOT) && masked(l, 9));
        CHECK(!masked(l, 4) && !masked(l, TB + 3) && !masked(l, NOTS));
        flat(l);
        nt.suppress_blank = 0;
        sotto__apply_filters(&m, l, NULL, 0, &nt);
        CHECK(!masked(l, SPACE) && !masked(l, EOT));
    }
}

/*
 * A language model given as next-token probabilities of the sequence so far
 * (timestamps off):
 *   start:        1: 0.50   2: 0.40   4: 0.10
 *   after 1:      4: 0.12, every other text token 0.88 / 9, eot ~0
 *   after 2:      3: 0.95   5: 0.05
 *   after 1 4 / 2 3 / other two-token sequences: eot 0.9, 6: 0.1
 * Greedy takes 1 4 (p = 0.5 * 0.12 * 0.9); beam search finds 2 3
 * (p = 0.4 * 0.95 * 0.9).
 */
typedef struct toy_lm {
    int hist[8][16];
    int len[8];
} toy_lm;

static void toy_logits(const int *h, int n, float *l)
{
    for (int i = 0; i < V; i++)
        l[i] = -30.0f;
    if (n == 0) {
        l[1] = logf(0.5f);
        l[2] = logf(0.4f);
        l[4] = logf(0.1f);
    } else if (n == 1 && h[0] == 1) {
        for (int i = 0; i < EOT; i++)
            l[i] = logf(0.88f / 9.0f);
        l[4] = logf(0.12f);
    } else if (n == 1 && h[0] == 2) {
        l[3] = logf(0.95f);
        l[5] = logf(0.05f);
    } else {
        l[EOT] = logf(0.9f);
        l[6] = logf(0.1f);
    }
}

static int toy_step(void *ctx, int n_seq, const int *src, const int *tokens,
                    float *logits)
{
    toy_lm *lm = ctx;
    toy_lm prev = *lm;

    for (int s = 0; s < n_seq; s++) {
        memcpy(lm->hist[s], prev.hist[src[s]], sizeof lm->hist[s]);
        lm->len[s] = prev.len[src[s]];
        if (lm->len[s] >= 16)
            return SOTTO_EINVAL;
        lm->hist[s][lm->len[s]++] = tokens[s];
        toy_logits(lm->hist[s], lm->len[s], logits + (size_t)s * V);
    }
    return 0;
}

static void run_search(int beam, sotto__gen_result *res)
{
    struct sotto_model m;
    toy_lm lm;
    sotto__stepper net = { toy_step, &lm, 8 };
    sotto__gen_opts o = opts(0);
    float logits[V];

    make_model(&m);
    m.n_suppress = 0;
    memset(&lm, 0, sizeof lm);
    o.beam_size = beam;
    o.suppress_blank = 0;
    toy_logits(NULL, 0, logits);
    memset(res, 0, sizeof *res);
    CHECK_INT_EQ(sotto__search(&m, &net, logits, &o, res), 0);
}

static void test_search(void)
{
    sotto__gen_result g, b;

    run_search(1, &g);
    CHECK_INT_EQ(g.n_tokens, 2);
    CHECK_INT_EQ(g.tokens[0], 1);
    CHECK_INT_EQ(g.tokens[1], 4);
    /* The sum counts the end token; the average divides by n + 1. */
    CHECK(fabs(g.sum_logprob - log(0.5 * 0.12 * 0.9)) < 1e-3);
    CHECK(fabs(g.avg_logprob - g.sum_logprob / 3.0) < 1e-9);

    run_search(5, &b);
    CHECK_INT_EQ(b.n_tokens, 2);
    CHECK_INT_EQ(b.tokens[0], 2);
    CHECK_INT_EQ(b.tokens[1], 3);
    CHECK(fabs(b.sum_logprob - log(0.4 * 0.95 * 0.9)) < 1e-3);
    CHECK(b.sum_logprob > g.sum_logprob);
}

/* The length limit ends a search without an end token. */
static void test_length_limit(void)
{
    struct sotto_model m;
    toy_lm lm;
    sotto__stepper net = { toy_step, &lm, 8 };
    sotto__gen_opts o = opts(0);
    sotto__gen_result r;
    float logits[V];

    make_model(&m);
    memset(&lm, 0, sizeof lm);
    o.max_new_tokens = 1;
    toy_logits(NULL, 0, logits);
    CHECK_INT_EQ(sotto__search(&m, &net, logits, &o, &r), 0);
    CHECK_INT_EQ(r.n_tokens, 1);
    CHECK_INT_EQ(r.tokens[0], 1);

    memset(&lm, 0, sizeof lm);
    o.beam_size = 5;
    toy_logits(NULL, 0, logits);
    CHECK_INT_EQ(sotto__search(&m, &net, logits, &o, &r), 0);
    CHECK_INT_EQ(r.n_tokens, 1);
    CHECK_INT_EQ(r.tokens[0], 1);

    o.max_new_tokens = 0;
    CHECK_INT_EQ(sotto__search(&m, &net, logits, &o, &r), SOTTO_EINVAL);
}

/*
 * A forced prefix leads every search's tokens, is not scored, and counts as
 * sampled for the timestamp rules.
 */
static void test_prefix(void)
{
    static const int two[] = { 2 };
    static const int ts_prefix[] = { TB + 1, 3 };
    struct sotto_model m;
    toy_lm lm;
    sotto__stepper net = { toy_step, &lm, 8 };
    sotto__gen_opts o = opts(0);
    sotto__gen_result r;
    float logits[V];
    uint64_t rng = 7;

    make_model(&m);
    m.n_suppress = 0;
    o.suppress_blank = 0;
    o.prefix = two;
    o.n_prefix = 1;
    for (int beam = 1; beam <= 5; beam += 4) {
        /* The caller fed the prefix: the network already holds "2". */
        memset(&lm, 0, sizeof lm);
        lm.hist[0][0] = 2;
        lm.len[0] = 1;
        toy_logits(two, 1, logits);
        o.beam_size = beam;
        CHECK_INT_EQ(sotto__search(&m, &net, logits, &o, &r), 0);
        CHECK_INT_EQ(r.n_tokens, 2);
        CHECK_INT_EQ(r.tokens[0], 2);
        CHECK_INT_EQ(r.tokens[1], 3);
        CHECK(fabs(r.sum_logprob - log(0.95 * 0.9)) < 1e-3);
        CHECK(fabs(r.avg_logprob - r.sum_logprob / 2.0) < 1e-9);
    }
    /* Sampling: every candidate starts with the prefix. */
    memset(&lm, 0, sizeof lm);
    lm.hist[0][0] = 2;
    lm.len[0] = 1;
    toy_logits(two, 1, logits);
    o.beam_size = 1;
    o.temperature = 1.0f;
    o.best_of = 3;
    o.rng = &rng;
    CHECK_INT_EQ(sotto__search(&m, &net, logits, &o, &r), 0);
    CHECK(r.n_tokens >= 1 && r.tokens[0] == 2);

    /* Timestamps: after the prefix <|0.02|> "3", the initial-timestamp
     * limit (index 2) no longer applies, but timestamps before the
     * prefix's are still masked. */
    o = opts(1);
    o.prefix = ts_prefix;
    o.n_prefix = 2;
    o.max_new_tokens = 1;
    flat(logits);
    logits[TB + 5] = 5.0f;
    CHECK_INT_EQ(sotto__search(&m, &net, logits, &o, &r), 0);
    CHECK_INT_EQ(r.n_tokens, 3);
    CHECK_INT_EQ(r.tokens[2], TB + 5);
    flat(logits);
    logits[TB] = 5.0f;
    logits[TB + 1] = 4.0f;
    logits[TB + 2] = 3.0f;
    CHECK_INT_EQ(sotto__search(&m, &net, logits, &o, &r), 0);
    CHECK_INT_EQ(r.tokens[2], TB + 2);
    /* The prefix and the new tokens must fit the sequence. */
    o.max_new_tokens = SOTTO__MAX_GEN_TOKENS;
    CHECK_INT_EQ(sotto__search(&m, &net, logits, &o, &r), SOTTO_EINVAL);
}

int main(void)
{
    test_filters();
    test_search();
    test_length_limit();
    test_prefix();
    return test_main_exit("test_decode");
}
