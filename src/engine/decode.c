/*
 * decode.c - Whisper's token generation for one window.
 *
 * Logit filters, applied in this order at every step (docs/engine.md):
 *   1. suppress_tokens: config.json's suppress_ids (non-speech symbols and
 *      the task/special tokens) are never sampled;
 *   2. suppress_blank: at the first sampled position, " " and
 *      <|endoftext|> (config.json's suppress_ids_begin) are masked;
 *   3. timestamp rules (unless without_timestamps): <|notimestamps|> is
 *      masked; timestamps come in pairs (after "text, timestamp" only a
 *      timestamp or the end may follow; after two timestamps only text);
 *      timestamps never go back, and a closing timestamp may repeat the
 *      last value while an opening one must be larger; the first token is a
 *      timestamp of at most max_initial_timestamp; and when the total
 *      probability of the timestamps exceeds that of the likeliest text
 *      token, a timestamp is forced.
 * Log-probabilities for scores are taken after the filters.
 *
 * Greedy decoding takes the arg-max; sampling at temperature T draws from
 * softmax(logits / T) for best_of candidates in parallel and keeps the one
 * with the highest length-normalised log-probability; beam search keeps
 * beam_size hypotheses and finishes once beam_size * patience hypotheses
 * have ended.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "engine/decode.h"
#include "engine/vec.h"

static void mask_range(float *logits, int from, int to)
{
    for (int i = from; i < to; i++)
        logits[i] = -INFINITY;
}

void sotto__apply_filters(const struct sotto_model *m, float *logits,
                          const int *sampled, int n_sampled,
                          const sotto__gen_opts *o)
{
    const sotto__specials *sp = &m->sp;
    const int V = m->n_vocab, tb = sp->timestamp_begin;
    const int always[] = { sp->transcribe, sp->translate, sp->sot,
                           sp->sot_prev, sp->sot_lm, sp->no_speech };

    for (int i = 0; i < m->n_suppress; i++)
        logits[m->suppress[i]] = -INFINITY;
    for (size_t i = 0; i < SOTTO__ARRAY_LEN(always); i++)
        if (always[i] >= 0)
            logits[always[i]] = -INFINITY;

    if (o->suppress_blank && n_sampled == 0) {
        if (m->n_suppress_begin > 0) {
            for (int i = 0; i < m->n_suppress_begin; i++)
                logits[m->suppress_begin[i]] = -INFINITY;
        } else {
            if (sp->space >= 0)
                logits[sp->space] = -INFINITY;
            logits[sp->eot] = -INFINITY;
        }
    }

    if (o->without_timestamps)
        return;

    logits[sp->no_timestamps] = -INFINITY;
    if (n_sampled > 0) {
        const int last_ts = sampled[n_sampled - 1] >= tb;
        const int penult_ts = n_sampled < 2 || sampled[n_sampled - 2] >= tb;
        int last_value = -1;

        if (last_ts) {
            if (penult_ts)
                mask_range(logits, tb, V);          /* text must follow */
            else
                mask_range(logits, 0, sp->eot);     /* no text may follow */
        }
        for (int i = n_sampled - 1; i >= 0; i--)
            if (sampled[i] >= tb) {
                last_value = sampled[i];
                break;
            }
        if (last_value >= 0) {
            /* A closing timestamp may repeat the last one; otherwise the
             * next must be strictly later, so segments are never empty. */
            int lo = (last_ts && !penult_ts) ? last_value : last_value + 1;
            mask_range(logits, tb, lo < V ? lo : V);
        }
    } else {
        mask_range(logits, 0, tb);
        if (o->max_initial_timestamp_index >= 0) {
            int last_allowed = tb + o->max_initial_timestamp_index;
            if (last_allowed + 1 < V)
                mask_range(logits, last_allowed + 1, V);
        }
    }

    /* If the timestamps together are likelier than any text token, force a
     * timestamp.  (Both sides of the log-probability comparison share the
     * normaliser, so the logits compare directly.) */
    {
        double ts = sotto__logsumexp(logits + tb, V - tb);
        float max_text = -INFINITY;
        for (int i = 0; i < tb; i++)
            max_text = logits[i] > max_text ? logits[i] : max_text;
        if (ts > (double)max_text)
            mask_range(logits, 0, tb);
    }
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* splitmix64: a small, good generator with per-call state. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int sample(const float *logits, int n, float temperature, uint64_t *rng)
{
    const float mx = logits[argmax(logits, n)];
    double total = 0.0, u, acc = 0.0;

    for (int i = 0; i < n; i++)
        total += exp(((double)logits[i] - mx) / temperature);
    u = (double)(next_u64(rng) >> 11) * (1.0 / 9007199254740992.0) * total;
    for (int i = 0; i < n; i++) {
        acc += exp(((double)logits[i] - mx) / temperature);
        if (acc > u)
            return i;
    }
    return argmax(logits, n);
}

/* Feeds the prompt to sequence 0 and reads no_speech_prob at the sot
 * position; leaves the logits of the last prompt token in logits. */
static int feed_prompt(sotto__infer *st, const int *prompt, int n_prompt,
                       int sot_index, float *logits, float *no_speech_prob)
{
    const struct sotto_model *m = st->m;
    const int head = sot_index + 1;
    int rc;

    sotto__decode_truncate(st, 0);
    if ((rc = sotto__decode(st, 1, head, prompt, logits, NULL)) != 0)
        return rc;
    *no_speech_prob = 0.0f;
    if (m->sp.no_speech >= 0) {
        double lse = sotto__logsumexp(logits, m->n_vocab);
        *no_speech_prob = (float)exp((double)logits[m->sp.no_speech] - lse);
    }
    if (n_prompt > head)
        rc = sotto__decode(st, 1, n_prompt - head, prompt + head, logits, NULL);
    return rc;
}

/* Starts a sequence with the forced prefix. */
static void seed_prefix(int *tokens, int *n, const sotto__gen_opts *o)
{
    *n = 0;
    if (o->prefix != NULL && o->n_prefix > 0) {
        memcpy(tokens, o->prefix, (size_t)o->n_prefix * sizeof *tokens);
        *n = o->n_prefix;
    }
}

/* Tokens a sequence sampled itself (its length for scoring). */
static int n_new(int n, const sotto__gen_opts *o)
{
    int k = o->prefix != NULL ? n - o->n_prefix : n;
    return k > 0 ? k : 0;
}

static double token_logprob(const float *logits, int n, int tok)
{
    return (double)logits[tok] - sotto__logsumexp(logits, n);
}

/* Greedy decoding (temperature 0, one sequence). */
static int generate_greedy(const struct sotto_model *m,
                           const sotto__stepper *net, const sotto__gen_opts *o,
                           float *logits, sotto__gen_result *res)
{
    static const int src0 = 0;
    int rc;

    seed_prefix(res->tokens, &res->n_tokens, o);
    for (int step = 0; step < o->max_new_tokens; step++) {
        int tok;
        sotto__apply_filters(m, logits, res->tokens, res->n_tokens, o);
        tok = argmax(logits, m->n_vocab);
        res->sum_logprob += token_logprob(logits, m->n_vocab, tok);
        if (tok == m->sp.eot)
            break;
        res->tokens[res->n_tokens++] = tok;
        if (step + 1 == o->max_new_tokens)
            break;
        if ((rc = net->step(net->ctx, 1, &src0, &tok, logits)) != 0)
            return rc;
    }
    return 0;
}

/* Sampling at temperature > 0: best_of independent candidates decoded in
 * lockstep; the one with the best length-normalised log-probability wins. */
static int generate_sampled(const struct sotto_model *m,
                            const sotto__stepper *net, const sotto__gen_opts *o,
                            float *logits, sotto__gen_result *res)
{
    const int V = m->n_vocab;
    const int S = o->best_of < net->max_seq ? o->best_of : net->max_seq;
    sotto__gen_result *cand = NULL;
    int *done = NULL, *feed = NULL, *src = NULL;
    float *lg = NULL;
    int rc = 0, best = 0;
    double best_score = -INFINITY;

    cand = calloc((size_t)S, sizeof *cand);
    done = calloc((size_t)S, sizeof *done);
    feed = calloc((size_t)S, sizeof *feed);
    src = calloc((size_t)S, sizeof *src);   /* all start from sequence 0 */
    lg = malloc((size_t)S * V * sizeof *lg);
    if (!cand || !done || !feed || !src || !lg) {
        rc = SOTTO_ENOMEM;
        goto fail;
    }
    for (int s = 0; s < S; s++) {
        memcpy(lg + (size_t)s * V, logits, (size_t)V * sizeof *lg);
        seed_prefix(cand[s].tokens, &cand[s].n_tokens, o);
    }

    for (int step = 0; step < o->max_new_tokens; step++) {
        int alive = 0;
        for (int s = 0; s < S; s++) {
            float *l = lg + (size_t)s * V;
            int tok;
            if (done[s]) {
                feed[s] = m->sp.eot;
                continue;
            }
            sotto__apply_filters(m, l, cand[s].tokens, cand[s].n_tokens, o);
            tok = sample(l, V, o->temperature, o->rng);
            cand[s].sum_logprob += token_logprob(l, V, tok);
            if (tok == m->sp.eot) {
                done[s] = 1;
                feed[s] = tok;
                continue;
            }
            cand[s].tokens[cand[s].n_tokens++] = tok;
            feed[s] = tok;
            alive++;
        }
        if (alive == 0 || step + 1 == o->max_new_tokens)
            break;
        if ((rc = net->step(net->ctx, S, src, feed, lg)) != 0)
            goto fail;
        for (int s = 0; s < S; s++)
            src[s] = s;
    }
    for (int s = 0; s < S; s++) {
        double len = n_new(cand[s].n_tokens, o) > 0 ? n_new(cand[s].n_tokens, o) : 1;
        double score = cand[s].sum_logprob / pow(len, o->length_penalty);
        if (score > best_score) {
            best_score = score;
            best = s;
        }
    }
    res->n_tokens = cand[best].n_tokens;
    memcpy(res->tokens, cand[best].tokens, sizeof res->tokens);
    res->sum_logprob = cand[best].sum_logprob;
fail:
    free(cand);
    free(done);
    free(feed);
    free(src);
    free(lg);
    return rc;
}

/* One beam hypothesis. */
typedef struct beam {
    int tokens[SOTTO__MAX_GEN_TOKENS];
    int n;
    double logprob;            /* cumulative, after the filters */
} beam;

typedef struct beam_cand {
    double logprob;
    int src, tok;
} beam_cand;

/* Keeps cands[0 .. *n) as the k best by logprob, best first; on equal
 * scores the earlier (lower beam, then lower id) candidate stays ahead. */
static void topk_insert(beam_cand *cands, int *n, int k, beam_cand c)
{
    int j;

    if (*n == k && !(c.logprob > cands[k - 1].logprob))
        return;
    j = *n < k ? (*n)++ : k - 1;
    while (j > 0 && cands[j - 1].logprob < c.logprob) {
        cands[j] = cands[j - 1];
        j--;
    }
    cands[j] = c;
}

/*
 * Beam search as CTranslate2 runs it for Whisper: at each step the 2B best
 * (beam, token) pairs by cumulative log-probability are taken over all live
 * beams (only the single initial beam at the first step).  Among the first
 * B of them, a candidate ending in <|endoftext|> becomes a finished
 * hypothesis and its slot goes to the next non-final candidate from the
 * second B; final candidates there are ignored.  Search stops once
 * round(B * patience) hypotheses have finished; at the length limit every
 * live candidate counts as finished.  The finished hypothesis with the best
 * score / length^length_penalty wins (length without <|endoftext|>).
 */
static int generate_beam(const struct sotto_model *m,
                         const sotto__stepper *net, const sotto__gen_opts *o,
                         float *logits, sotto__gen_result *res)
{
    const int V = m->n_vocab, eot = m->sp.eot;
    const int B = o->beam_size < net->max_seq ? o->beam_size : net->max_seq;
    const int K = 2 * B;
    int max_finished = (int)lround(B * (o->patience > 0 ? o->patience : 1.0f));
    beam *beams = NULL, *next = NULL, *fin = NULL;
    beam_cand *cands = NULL;
    float *lg = NULL;
    int *src = NULL, *feed = NULL;
    int n_beams = 1, n_fin = 0, fin_cap, rc = 0;

    if (max_finished < 1)
        max_finished = 1;
    fin_cap = max_finished + 2 * B;
    beams = calloc((size_t)B, sizeof *beams);
    next = calloc((size_t)B, sizeof *next);
    fin = calloc((size_t)fin_cap, sizeof *fin);
    cands = calloc((size_t)K, sizeof *cands);
    lg = malloc((size_t)B * V * sizeof *lg);
    src = calloc((size_t)B, sizeof *src);
    feed = calloc((size_t)B, sizeof *feed);
    if (!beams || !next || !fin || !cands || !lg || !src || !feed) {
        rc = SOTTO_ENOMEM;
        goto fail;
    }
    memcpy(lg, logits, (size_t)V * sizeof *lg);
    seed_prefix(beams[0].tokens, &beams[0].n, o);

    for (int step = 0; step < o->max_new_tokens; step++) {
        const int last_step = step + 1 == o->max_new_tokens;
        int nc = 0, n_next = 0, refill = B;

        for (int b = 0; b < n_beams; b++) {
            float *l = lg + (size_t)b * V;
            double lse;
            sotto__apply_filters(m, l, beams[b].tokens, beams[b].n, o);
            lse = sotto__logsumexp(l, V);
            for (int i = 0; i < V; i++) {
                beam_cand c;
                if (l[i] == -INFINITY)
                    continue;
                c.logprob = beams[b].logprob + ((double)l[i] - lse);
                c.src = b;
                c.tok = i;
                topk_insert(cands, &nc, K, c);
            }
        }
        for (int c = 0; c < nc && c < B; c++) {
            const beam *from = &beams[cands[c].src];
            beam_cand take = cands[c];

            if (take.tok == eot || last_step) {
                /* A finished hypothesis; <|endoftext|> is scored but not
                 * kept in the tokens. */
                if (n_fin < fin_cap) {
                    fin[n_fin] = *from;
                    if (take.tok != eot)
                        fin[n_fin].tokens[fin[n_fin].n++] = take.tok;
                    fin[n_fin].logprob = take.logprob;
                    n_fin++;
                }
                if (last_step)
                    continue;
                /* Its slot goes to the next non-final candidate. */
                while (refill < nc && cands[refill].tok == eot)
                    refill++;
                if (refill >= nc)
                    continue;
                take = cands[refill++];
                from = &beams[take.src];
            }
            next[n_next] = *from;
            next[n_next].tokens[next[n_next].n++] = take.tok;
            next[n_next].logprob = take.logprob;
            src[n_next] = take.src;
            feed[n_next] = take.tok;
            n_next++;
        }
        if (last_step || n_fin >= max_finished || n_next == 0)
            break;
        memcpy(beams, next, (size_t)n_next * sizeof *beams);
        n_beams = n_next;
        if ((rc = net->step(net->ctx, n_beams, src, feed, lg)) != 0)
            goto fail;
    }
    {
        int best = -1;
        double best_score = -INFINITY;
        for (int i = 0; i < n_fin; i++) {
            double len = n_new(fin[i].n, o) > 0 ? n_new(fin[i].n, o) : 1;
            double score = fin[i].logprob / pow(len, o->length_penalty);
            if (best < 0 || score > best_score) {
                best_score = score;
                best = i;
            }
        }
        if (best >= 0) {
            res->n_tokens = fin[best].n;
            memcpy(res->tokens, fin[best].tokens, (size_t)fin[best].n * sizeof(int));
            res->sum_logprob = fin[best].logprob;
        }
    }
fail:
    free(beams);
    free(next);
    free(fin);
    free(cands);
    free(lg);
    free(src);
    free(feed);
    return rc;
}

int sotto__search(const struct sotto_model *m, const sotto__stepper *net,
                  float *logits, const sotto__gen_opts *o,
                  sotto__gen_result *res)
{
    int rc;

    const int n_prefix = o->prefix != NULL ? o->n_prefix : 0;

    res->n_tokens = 0;
    res->sum_logprob = 0.0;
    if (o->max_new_tokens <= 0 || n_prefix < 0 ||
        n_prefix + o->max_new_tokens > (int)SOTTO__ARRAY_LEN(res->tokens) ||
        net->max_seq < 1)
        return SOTTO_EINVAL;
    if (o->temperature > 0.0f)
        rc = generate_sampled(m, net, o, logits, res);
    else if (o->beam_size > 1)
        rc = generate_beam(m, net, o, logits, res);
    else
        rc = generate_greedy(m, net, o, logits, res);
    res->avg_logprob = res->sum_logprob / (n_new(res->n_tokens, o) + 1);
    return rc;
}

/* The network side of a search: sequence s continues the cache of src[s]. */
static int infer_step(void *ctx, int n_seq, const int *src, const int *tokens,
                      float *logits)
{
    sotto__infer *st = ctx;
    int identity = 1, rc;

    for (int s = 0; s < n_seq; s++)
        identity &= src[s] == s;
    if (!identity && (rc = sotto__decode_reorder(st, n_seq, src)) != 0)
        return rc;
    return sotto__decode(st, n_seq, 1, tokens, logits, NULL);
}

int sotto__generate(sotto__infer *st, const int *prompt, int n_prompt,
                    int sot_index, const sotto__gen_opts *o,
                    sotto__gen_result *res)
{
    const struct sotto_model *m = st->m;
    sotto__stepper net = { infer_step, st, st->n_seq_cap };
    float *logits;
    int rc;

    memset(res, 0, sizeof *res);
    if (n_prompt <= 0 || sot_index < 0 || sot_index >= n_prompt ||
        n_prompt + o->max_new_tokens > m->n_text_ctx + 1)
        return SOTTO_EINVAL;
    logits = malloc((size_t)m->n_vocab * sizeof *logits);
    if (logits == NULL)
        return SOTTO_ENOMEM;
    rc = feed_prompt(st, prompt, n_prompt, sot_index, logits, &res->no_speech_prob);
    if (rc == 0)
        rc = sotto__search(m, &net, logits, o, res);
    free(logits);
    return rc;
}
