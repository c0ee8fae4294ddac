/*
 * stream.c - real-time transcription of audio fed in pieces: the VAD gate,
 * the rolling buffer, the passes, buffer trimming, and the event queue.
 *
 * Data flow for each fed piece of audio:
 *
 *   feed -> validate -> (resample to 16 kHz) -> 512-sample VAD frames
 *        -> gate: silence goes to a short pre-roll, speech (plus the
 *           pre-roll before it) to the utterance buffer
 *        -> after every min_chunk of new speech: a pass over the buffer
 *           (sotto__transcribe_window) -> LocalAgreement (agree.c)
 *           -> final and partial events
 *        -> a long enough pause: a last pass that commits every word,
 *           then utterance_end, and the buffer starts afresh.
 *
 * Times: the stream counts the 16 kHz samples it has taken in (n_in); the
 * buffer's first sample has index buf_start; an event's times are
 * time_offset + index / 16000.
 *
 * Memory and compute per pass stay bounded however long a stream runs:
 * the buffer is cut at a committed segment end once it exceeds
 * buffer_trim seconds (and forcibly before SOTTO__STREAM_MAX_BUFFER_S),
 * the prompt history keeps SOTTO__STREAM_HISTORY_BYTES, and superseded
 * partials are dropped from the event queue.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <soxr.h>

#include "common/common.h"
#include "engine/model.h"
#include "engine/transcribe.h"
#include "engine/vad.h"
#include "engine/whisper.h"
#include "stream/agree.h"

/* The most audio a pass may see; the encoder window is 30 s. */
#define SOTTO__STREAM_MAX_BUFFER_S 28.0
/*
 * Zero log-mel frames encoded after the buffer (3 s).  Whisper was trained
 * on 30-second windows whose speech is followed by silence; cut at the
 * buffer's end, tiny.en loops ("and so and so ...") on short buffers.
 * Three seconds of silence stop that at a fraction of the cost of the full
 * window; docs/streaming.md has the measurements.
 */
#define SOTTO__STREAM_PAD_FRAMES 300
/* Characters of committed text given as the prompt, as whisper_streaming. */
#define SOTTO__STREAM_PROMPT_CHARS 200
/* Bytes of committed text kept for the prompt. */
#define SOTTO__STREAM_HISTORY_BYTES 2000
/* Tokens a pass may sample: a base plus a rate per second of audio, far
 * above speech (about 4 tokens/s) so that only a repetition loop hits it. */
#define SOTTO__STREAM_TOKENS_BASE 16
#define SOTTO__STREAM_TOKENS_PER_S 10
/* How far past buffer_trim a buffer may grow while waiting for a segment or
 * sentence end to cut at.  A pass costs about in proportion to the buffer,
 * and on a loaded server the streams' longest passes are what delays
 * commits: 2 s against 5 s cut the compute of the long file by 6 % for one
 * word more in 566 (docs/streaming.md). */
#define SOTTO__STREAM_TRIM_SLACK_S 2.0
/* Feeds are taken in pieces of at most this much audio, with a pass due
 * after each: a caller that falls behind catches up in few passes, and a
 * huge feed still runs a pass (and a trim) every few seconds. */
#define SOTTO__STREAM_MAX_PIECE_S 4.0
/* Input converted per step by the s16 and resampling paths. */
#define SOTTO__STREAM_BLOCK 4096

#define SR SOTTO_SAMPLE_RATE

/* An event as queued: owns its text and words. */
typedef struct stream_event {
    int type, utterance, code;
    double start, end, audio_time;
    char *text;
    sotto_word *words;
    int n_words;
} stream_event;

struct sotto_stream {
    const struct sotto_model *m;
    sotto_stream_params p;
    sotto_transcribe_params dec;     /* p.decode with the streaming rules */
    sotto__infer *st;                /* only while an utterance is open */
    sotto__vad *vad;
    soxr_t soxr;                     /* NULL at 16 kHz */
    uint64_t rng;
    int lang_token;
    int ended;

    /* Input. */
    int64_t n_in;                    /* 16 kHz samples taken in */
    int64_t n_fed;                   /* samples fed, at the caller's rate */
    float frame[SOTTO__VAD_FRAME];   /* samples waiting for a VAD step */
    int frame_fill;

    /* Gate. */
    int in_utt;                      /* an utterance is open */
    int64_t silence_at;              /* where the current pause began, or -1 */
    int64_t utt_speech;              /* speech samples in the utterance */
    int utt_id;
    int utt_passes;
    float *pre;                      /* [pre_cap] the audio before speech */
    int pre_n, pre_cap;

    /* The utterance buffer. */
    float *buf;                      /* [buf_cap] */
    size_t buf_n, buf_cap;
    int64_t buf_start;               /* index of buf[0] in the stream */
    size_t since_pass;               /* samples added since the last pass */

    /* Commit state. */
    sotto__agree agree;
    char *partial;                   /* text of the last partial sent */
    int n_resume;                    /* agree.committed[0 .. n_resume) are
                                      * resume_words, not this stream's */
    /* A resumed stream's passes first go over audio whose words were
     * committed before (the resume words), so its own agreement drops
     * them and says nothing about which of them its passes agree on.
     * Forcing them all into the next pass's prefix would force what a
     * short pass heard at its buffer's edge, which the original stream
     * never did, and the replay would then hear the rest differently
     * ("cold Hardin" for "cold-hearted").  So while `replaying`, a second
     * agreement over the same passes, without the resume words, bounds the
     * prefix: only words two of the replay's own passes agree on are
     * forced, as in the original stream.  It ends once it reaches
     * resume_end, the end of the last resume word. */
    sotto__agree replay;
    int replaying;
    double resume_end;
    char *hist;                      /* committed text before the buffer */
    size_t hist_n, hist_cap;
    /* The tokens of the last pass up to its last committed word: the next
     * pass over the same buffer is forced to start with them (see
     * prefix_take).  Empty whenever the buffer's start moves. */
    int pfx[SOTTO__MAX_PREFIX];
    int n_pfx;

    /* Events: queue[head .. n) are waiting; cur is the one last polled. */
    stream_event *queue;
    int head, n, cap;
    stream_event cur;

    sotto_stream_stats stats;
    char err[256];
};

sotto_stream_params sotto_stream_default_params(void)
{
    sotto_stream_params p;

    memset(&p, 0, sizeof p);
    p.sample_rate = SR;
    p.min_chunk = 1.0f;
    p.force_committed = 1;
    p.first_chunk = 0.5f;
    p.buffer_trim = 15.0f;
    p.vad = 1;
    p.vad_threshold = 0.5f;
    p.vad_min_silence_ms = 600;
    p.vad_speech_pad_ms = 300;
    p.vad_min_speech_ms = 150;
    p.decode = sotto_transcribe_default_params();
    p.decode.beam_size = 1;
    p.decode.word_timestamps = 1;
    return p;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double stream_time(const sotto_stream *s, int64_t index)
{
    return s->p.time_offset + (double)index / SR;
}

/* ---- events ------------------------------------------------------------ */

static void event_free(stream_event *e)
{
    for (int i = 0; i < e->n_words; i++)
        free((char *)e->words[i].text);
    free(e->words);
    free(e->text);
    memset(e, 0, sizeof *e);
}

/* Joins the words' texts. */
static char *join_words(const sotto__hword *w, int n)
{
    size_t len = 1;
    char *t;

    for (int i = 0; i < n; i++)
        len += strlen(w[i].text);
    t = malloc(len);
    if (t == NULL)
        return NULL;
    t[0] = 0;
    for (int i = 0, at = 0; i < n; i++) {
        size_t l = strlen(w[i].text);
        memcpy(t + at, w[i].text, l + 1);
        at += (int)l;
    }
    return t;
}

static int queue_push(sotto_stream *s, stream_event *e)
{
    /* A partial supersedes a partial still waiting at the tail. */
    if (e->type == SOTTO_EVENT_PARTIAL && s->n > s->head &&
        s->queue[s->n - 1].type == SOTTO_EVENT_PARTIAL) {
        event_free(&s->queue[s->n - 1]);
        s->queue[s->n - 1] = *e;
        return 0;
    }
    if (s->head > 0 && s->head == s->n)
        s->head = s->n = 0;
    if (s->n == s->cap) {
        if (s->head > 0) {
            memmove(s->queue, s->queue + s->head,
                    (size_t)(s->n - s->head) * sizeof *s->queue);
            s->n -= s->head;
            s->head = 0;
        }
        if (s->n == s->cap) {
            int cap = s->cap ? s->cap * 2 : 16;
            stream_event *nq = realloc(s->queue, (size_t)cap * sizeof *nq);
            if (nq == NULL)
                return SOTTO_ENOMEM;
            s->queue = nq;
            s->cap = cap;
        }
    }
    s->queue[s->n++] = *e;
    return 0;
}

/* Queues an event for words w[0 .. n) (copied). */
static int emit_words(sotto_stream *s, int type, const sotto__hword *w, int n)
{
    stream_event e;
    int rc;

    memset(&e, 0, sizeof e);
    e.type = type;
    e.utterance = s->utt_id;
    e.audio_time = stream_time(s, s->n_in);
    e.text = join_words(w, n);
    if (e.text == NULL)
        return SOTTO_ENOMEM;
    if (n > 0) {
        e.start = w[0].start;
        e.end = w[n - 1].end;
        e.words = calloc((size_t)n, sizeof *e.words);
        if (e.words == NULL) {
            event_free(&e);
            return SOTTO_ENOMEM;
        }
        for (int i = 0; i < n; i++) {
            e.words[i].start = w[i].start;
            e.words[i].end = w[i].end;
            e.words[i].probability = w[i].probability;
            e.words[i].text = strdup(w[i].text);
            if (e.words[i].text == NULL) {
                event_free(&e);
                return SOTTO_ENOMEM;
            }
            e.n_words = i + 1;
        }
    }
    if ((rc = queue_push(s, &e)) != 0)
        event_free(&e);
    return rc;
}

static int emit_simple(sotto_stream *s, int type, double end, int code,
                       const char *msg)
{
    stream_event e;
    int rc;

    memset(&e, 0, sizeof e);
    e.type = type;
    e.utterance = s->utt_id;
    e.code = code;
    e.start = e.end = end;
    e.audio_time = stream_time(s, s->n_in);
    e.text = strdup(msg != NULL ? msg : "");
    if (e.text == NULL)
        return SOTTO_ENOMEM;
    if ((rc = queue_push(s, &e)) != 0)
        event_free(&e);
    return rc;
}

/* ---- prompt history ----------------------------------------------------- */

static int hist_append(sotto_stream *s, const char *text)
{
    size_t l = strlen(text);

    if (s->hist_n + l + 1 > s->hist_cap) {
        size_t cap = s->hist_cap ? s->hist_cap : 512;
        char *nh;
        while (cap < s->hist_n + l + 1)
            cap *= 2;
        nh = realloc(s->hist, cap);
        if (nh == NULL)
            return SOTTO_ENOMEM;
        s->hist = nh;
        s->hist_cap = cap;
    }
    memcpy(s->hist + s->hist_n, text, l + 1);
    s->hist_n += l;
    if (s->hist_n > SOTTO__STREAM_HISTORY_BYTES) {
        /* Keep the tail, from a space so no word or UTF-8 sequence is cut. */
        size_t cut = s->hist_n - SOTTO__STREAM_HISTORY_BYTES / 2;
        while (cut < s->hist_n && s->hist[cut] != ' ')
            cut++;
        memmove(s->hist, s->hist + cut, s->hist_n - cut + 1);
        s->hist_n -= cut;
    }
    return 0;
}

/* Ends a resumed stream's second agreement (sotto_stream.replay). */
static void replay_stop(sotto_stream *s)
{
    sotto__agree_reset(&s->replay);
    s->replaying = 0;
}

/* Moves committed words that end at or before t into the history. */
static int hist_take_committed(sotto_stream *s, double t)
{
    int rc;
    for (int i = 0; i < s->agree.committed.n; i++)
        if (s->agree.committed.v[i].end <= t &&
            (rc = hist_append(s, s->agree.committed.v[i].text)) != 0)
            return rc;
    {
        int before = s->agree.committed.n, gone;
        sotto__agree_forget_before(&s->agree, t);
        gone = before - s->agree.committed.n;
        s->n_resume -= gone < s->n_resume ? gone : s->n_resume;
    }
    sotto__agree_forget_before(&s->replay, t);
    return 0;
}

/* Tokenizes the last SOTTO__STREAM_PROMPT_CHARS of history into *ids. */
static int prompt_tokens(sotto_stream *s, int **ids, int *n)
{
    const char *text = s->hist != NULL ? s->hist : "";
    int cnt;

    *ids = NULL;
    *n = 0;
    if (s->hist_n > SOTTO__STREAM_PROMPT_CHARS) {
        text = s->hist + s->hist_n - SOTTO__STREAM_PROMPT_CHARS;
        while (*text != 0 && *text != ' ')
            text++;
    }
    if (*text == 0)
        return 0;
    cnt = sotto__tokenizer_encode(s->m->tok, text, NULL, 0);
    if (cnt == SOTTO_EUNSUPPORTED)
        return 0;               /* vocabulary.txt only: no prompt */
    if (cnt <= 0)
        return cnt;
    *ids = malloc((size_t)cnt * sizeof **ids);
    if (*ids == NULL)
        return SOTTO_ENOMEM;
    sotto__tokenizer_encode(s->m->tok, text, *ids, cnt);
    *n = cnt;
    return 0;
}

/* ---- the buffer --------------------------------------------------------- */

static int run_pass(sotto_stream *s, int last);

static int buf_append(sotto_stream *s, const float *x, size_t n)
{
    /* An utterance that starts on its first frame has no pre-roll: nothing
     * to add (and memcpy must not see the still-NULL buffer). */
    if (n == 0)
        return 0;
    /* Never let the buffer outgrow the encoder window: a pass first trims
     * it (forcibly when it must). */
    if (s->in_utt && s->buf_n > 0 &&
        (double)(s->buf_n + n) > SOTTO__STREAM_MAX_BUFFER_S * SR) {
        int rc = run_pass(s, 0);
        if (rc != 0)
            return rc;
    }
    if (s->buf_n + n > s->buf_cap) {
        size_t cap = s->buf_cap ? s->buf_cap : (size_t)SR * 4;
        float *nb;
        while (cap < s->buf_n + n)
            cap *= 2;
        nb = realloc(s->buf, cap * sizeof *nb);
        if (nb == NULL)
            return SOTTO_ENOMEM;
        s->buf = nb;
        s->buf_cap = cap;
    }
    memcpy(s->buf + s->buf_n, x, n * sizeof *x);
    s->buf_n += n;
    s->since_pass += n;
    s->stats.speech_seconds += (double)n / SR;
    return 0;
}

/* Drops the buffer's samples before stream time t. */
static void buf_cut(sotto_stream *s, double t)
{
    double at = (t - stream_time(s, s->buf_start)) * SR;
    size_t k;

    if (at <= 0)
        return;
    k = at >= (double)s->buf_n ? s->buf_n : (size_t)at;
    memmove(s->buf, s->buf + k, (s->buf_n - k) * sizeof *s->buf);
    s->buf_n -= k;
    s->buf_start += (int64_t)k;
    s->n_pfx = 0;               /* its timestamps count from the old start */
}

/* Keeps the last pre_cap samples of x as the pre-roll. */
static void pre_push(sotto_stream *s, const float *x, size_t n)
{
    if (s->pre_cap == 0)
        return;
    if (n >= (size_t)s->pre_cap) {
        memcpy(s->pre, x + n - (size_t)s->pre_cap, (size_t)s->pre_cap * sizeof *x);
        s->pre_n = s->pre_cap;
        return;
    }
    if ((size_t)s->pre_n + n > (size_t)s->pre_cap) {
        int drop = s->pre_n + (int)n - s->pre_cap;
        memmove(s->pre, s->pre + drop, (size_t)(s->pre_n - drop) * sizeof *s->pre);
        s->pre_n -= drop;
    }
    memcpy(s->pre + s->pre_n, x, n * sizeof *x);
    s->pre_n += (int)n;
}

/* ---- passes ------------------------------------------------------------- */

/*
 * Cuts the buffer once it is longer than buffer_trim: at the later of the
 * end of the latest segment of this pass (not the last one, which may
 * still grow) that ends at or before the committed text does, and the end
 * of the last committed word that ends a sentence.  Should neither exist,
 * the cut is at the last committed word once the buffer is
 * SOTTO__STREAM_TRIM_SLACK_S longer than buffer_trim; and should nothing
 * be committed as the buffer nears the encoder's 30 s, the pending words
 * are committed as they stand and the buffer cut after them.
 */
static int trim(sotto_stream *s, const double *seg_end, int n_seg)
{
    const double len = (double)s->buf_n / SR;
    const double hard = SOTTO__STREAM_MAX_BUFFER_S - 2.0 * s->p.min_chunk;
    double cut = -1.0;
    int rc;

    if (len <= s->p.buffer_trim)
        return 0;
    for (int i = n_seg - 2; i >= 0; i--)
        if (seg_end[i] <= s->agree.last_end) {
            cut = seg_end[i];
            break;
        }
    /* A committed word that ends a sentence is as good a cut, and read
     * speech often comes as one long segment. */
    for (int i = s->agree.committed.n - 1; i >= 0; i--) {
        const sotto__hword *w = &s->agree.committed.v[i];
        size_t l = strlen(w->text);
        if (w->end <= cut)
            break;
        if (l > 0 && strchr(".?!", w->text[l - 1]) != NULL) {
            cut = w->end;
            break;
        }
    }
    /* Failing both, past buffer_trim + SOTTO__STREAM_TRIM_SLACK_S, cut at
     * the last committed word: the prompt still carries the text. */
    if (cut <= stream_time(s, s->buf_start) &&
        len > s->p.buffer_trim + SOTTO__STREAM_TRIM_SLACK_S)
        cut = s->agree.last_end;
    if (cut <= stream_time(s, s->buf_start) && len > hard) {
        sotto__wordvec forced = { 0 };
        if ((rc = sotto__agree_commit_pending(&s->agree, &forced)) == 0 &&
            forced.n > 0)
            rc = emit_words(s, SOTTO_EVENT_FINAL, forced.v, forced.n);
        sotto__wordvec_free(&forced);
        if (rc != 0)
            return rc;
        cut = s->agree.last_end;
        if (cut <= stream_time(s, s->buf_start))
            cut = stream_time(s, s->buf_start) + len - hard / 2;
    }
    if (cut <= stream_time(s, s->buf_start))
        return 0;
    if ((rc = hist_take_committed(s, cut)) != 0)
        return rc;
    buf_cut(s, cut);
    return 0;
}

/* Appends tokens to the prefix, as many as fit. */
static void prefix_add(sotto_stream *s, const int *tok, int n)
{
    if (n > SOTTO__MAX_PREFIX - s->n_pfx)
        n = SOTTO__MAX_PREFIX - s->n_pfx;
    memcpy(s->pfx + s->n_pfx, tok, (size_t)n * sizeof *tok);
    s->n_pfx += n;
}

/*
 * Sets the next pass's prefix from this pass's result r (times from base):
 * its tokens up to the end of the last word that ends by t, the end of the
 * last committed word.  A word is committed once two passes agree on it
 * and is never revised, so decoding it again in every pass only costs a
 * decoder step per token; forced, its tokens go through in one batch with
 * the prompt, and the decoder steps only over the words still open.
 *
 * Whole segments are taken with their timestamps, except the last one,
 * whose closing timestamp may only mean that this pass's audio ended
 * there.  Inside a segment the cut is found by decoding token prefixes
 * until their text equals the text of the words before the cut; if none
 * does (a word boundary inside a token), the prefix stops at the
 * segment's start.
 */
static int prefix_take(sotto_stream *s, const sotto__result *r, double base,
                       double t)
{
    const sotto__tokenizer *tok = s->m->tok;
    const int eot = s->m->sp.eot;
    char *want = NULL, *have = NULL;
    int rc = 0;

    s->n_pfx = 0;
    for (int i = 0; i < r->n_segments; i++) {
        const sotto_segment *g = &r->segments[i];
        const int last = i == r->n_segments - 1;
        size_t want_n = 0;
        int k = 0;

        while (k < g->n_words && base + g->words[k].end <= t + 1e-6)
            k++;
        if (k == 0)
            break;
        if (k == g->n_words && !last) {
            prefix_add(s, g->tokens, g->n_tokens);
            continue;
        }
        for (int j = 0; j < k; j++)
            want_n += strlen(g->words[j].text);
        want = malloc(want_n + 1);
        have = malloc(want_n + 1);
        if (want == NULL || have == NULL) {
            rc = SOTTO_ENOMEM;
            break;
        }
        want[0] = 0;
        for (int j = 0, off = 0; j < k; j++) {
            size_t l = strlen(g->words[j].text);
            memcpy(want + off, g->words[j].text, l + 1);
            off += (int)l;
        }
        for (int j = 1; j <= g->n_tokens; j++) {
            int need;
            if (g->tokens[j - 1] >= eot)
                continue;
            need = sotto__tokenizer_decode(tok, g->tokens, j, eot, NULL, 0);
            if (need < 0 || (size_t)need > want_n)
                break;
            if ((size_t)need < want_n)
                continue;
            sotto__tokenizer_decode(tok, g->tokens, j, eot, have, want_n + 1);
            if (memcmp(have, want, want_n) == 0)
                prefix_add(s, g->tokens, j);
            break;
        }
        break;
    }
    free(want);
    free(have);
    if (rc != 0)
        s->n_pfx = 0;
    return rc;
}

/* Whether a segment of r loops: its compression ratio is over the
 * threshold (0 or less: the test is off). */
static int result_loops(const sotto__result *r, float threshold)
{
    if (threshold <= 0.0f)
        return 0;
    for (int i = 0; i < r->n_segments; i++)
        if (r->segments[i].compression_ratio > threshold)
            return 1;
    return 0;
}

/*
 * Cuts the hypothesis of a looping last pass at its first tandem repeat,
 * then appends the previous pass's pending words that begin after what
 * is kept (within the LocalAgreement start tolerance), so that neither
 * the loop nor anything heard before it is lost.  A looping text with no
 * tandem repeat is not trusted at all: only the pending words are kept.
 */
static int cut_loop(sotto_stream *s, sotto__wordvec *hyp, double base,
                    double secs)
{
    int keep = sotto__agree_loop_start(hyp->v, hyp->n), n_pending = 0, rc;
    double after = -1e300;

    if (keep == hyp->n)
        keep = 0;
    for (int i = keep; i < hyp->n; i++)
        free(hyp->v[i].text);
    hyp->n = keep;
    if (keep > 0)
        after = hyp->v[keep - 1].end - 0.1;
    for (int i = 0; i < s->agree.pending.n; i++) {
        const sotto__hword *w = &s->agree.pending.v[i];
        if (w->start < after)
            continue;
        if ((rc = sotto__wordvec_push(hyp, w->start, w->end, w->text,
                                      w->probability)) != 0)
            return rc;
        n_pending++;
    }
    sotto__logf(s->m->log, s->m->log_user, SOTTO_LOG_WARN,
                "stream pass: buffer %.2f..%.2f s loops; committing its %d "
                "words before the repetition and %d pending words after them",
                base, base + secs, keep, n_pending);
    return 0;
}

/*
 * Runs a resumed stream's second agreement over this pass's hypothesis
 * and lowers *upto, the end of the words the next pass is forced to
 * start with, to the end of what the replay's own passes agree on, until
 * that reaches the resume words' end (see sotto_stream.replay).
 */
static int replay_agree(sotto_stream *s, const sotto__wordvec *hyp,
                        double *upto)
{
    sotto__wordvec out = { 0 };
    int rc = sotto__agree_insert(&s->replay, hyp->v, hyp->n, 0, &out);

    sotto__wordvec_free(&out);
    if (rc != 0)
        return rc;
    if (s->replay.last_end >= s->resume_end - 1e-6) {
        replay_stop(s);
        return 0;
    }
    if (s->replay.last_end < *upto)
        *upto = s->replay.last_end;
    return 0;
}

/*
 * Transcribes the buffer and commits what two passes agree on; with
 * `last`, commits every word (the utterance is over).  A failed pass is
 * reported as an error event; at the end of an utterance the pending
 * words of the previous pass are then committed, so nothing is dropped.
 */
static int run_pass(sotto_stream *s, int last)
{
    sotto__result *r = NULL;
    sotto__wordvec hyp = { 0 }, committed = { 0 };
    sotto_transcribe_params dec = s->dec;
    double *seg_end = NULL, t0, base = stream_time(s, s->buf_start);
    double secs = (double)s->buf_n / SR;
    int *ids = NULL, n_ids = 0, rc = 0, n_seg = 0, quick, n_forced;
    char msg[256];

    s->since_pass = 0;
    if (s->buf_n == 0)
        goto commit;
    /* Intermediate passes decode once, at the first temperature: a pass
     * whose text loops (compression ratio over the threshold, as tiny.en
     * does on the first second of an utterance) is simply skipped, since
     * the next pass sees more audio.  The last pass decodes once too, so
     * that a flush (a client's Ctrl+C, a drain) costs one decode; a loop
     * there is cut where it starts to repeat (cut_loop).  The
     * fallback ladder, which costs several decodes, is kept for the passes
     * over a buffer already due for trimming, whose words must be taken. */
    quick = !last && secs <= s->p.buffer_trim;
    if (quick || last)
        dec.n_temperatures = 1;
    /* With a forced prefix the sampled tokens are only the open words at
     * the buffer's end, which often stops inside a word: their average
     * log-probability says little about the window, so it neither calls
     * for the fallback ladder nor marks the window silent (committed
     * speech is already in it).  The compression-ratio test, over the
     * whole text, still catches loops. */
    if (s->n_pfx > 0)
        dec.log_prob_threshold = -INFINITY;
    dec.max_new_tokens = SOTTO__STREAM_TOKENS_BASE +
                         (int)(SOTTO__STREAM_TOKENS_PER_S * secs);
    if (s->dec.max_new_tokens > 0 && s->dec.max_new_tokens < dec.max_new_tokens)
        dec.max_new_tokens = s->dec.max_new_tokens;
    if ((rc = prompt_tokens(s, &ids, &n_ids)) != 0)
        goto fail;
    r = sotto__result_create(secs);
    if (r == NULL) {
        rc = SOTTO_ENOMEM;
        goto fail;
    }
    /* The network's working state (tens of MB with its KV cache) exists
     * only while someone speaks; idle streams cost little memory. */
    if (s->st == NULL) {
        int n_seq = s->dec.beam_size > s->dec.best_of ? s->dec.beam_size
                                                      : s->dec.best_of;
        if ((rc = sotto__infer_create(s->m, n_seq, &s->st)) != 0)
            goto fail;
    }
    n_forced = s->n_pfx;
    t0 = now_seconds();
    rc = sotto__transcribe_window(s->st, s->buf, s->buf_n, ids, n_ids,
                                  s->pfx, s->n_pfx,
                                  s->p.encode_full_window ? -1
                                                          : SOTTO__STREAM_PAD_FRAMES,
                                  &dec,
                                  &s->lang_token, &s->rng, r, msg, sizeof msg);
    s->stats.compute_seconds += now_seconds() - t0;
    s->stats.n_passes++;
    s->utt_passes++;
    if (rc != 0) {
        s->n_pfx = 0;
        sotto__logf(s->m->log, s->m->log_user, SOTTO_LOG_ERROR,
                    "stream pass at %.2f s failed: %s", base, msg);
        if ((rc = emit_simple(s, SOTTO_EVENT_ERROR, base + secs, rc, msg)) != 0)
            goto fail;
        goto commit;
    }
    seg_end = malloc(((size_t)r->n_segments + 1) * sizeof *seg_end);
    if (seg_end == NULL) {
        rc = SOTTO_ENOMEM;
        goto fail;
    }
    for (int i = 0; i < r->n_segments; i++) {
        const sotto_segment *g = &r->segments[i];
        seg_end[n_seg++] = base + g->end;
        for (int j = 0; j < g->n_words; j++)
            if ((rc = sotto__wordvec_push(&hyp, base + g->words[j].start,
                                          base + g->words[j].end,
                                          g->words[j].text,
                                          g->words[j].probability)) != 0)
                goto fail;
    }
    /* A quick pass whose text loops is skipped: the next pass sees more
     * audio.  On the last pass of an utterance ("Americans. And so my
     * fellow Americans. And so ..." over less than a second) the loop must
     * not be committed, and neither may what was heard since the previous
     * pass be dropped (the end of a recording flushed in one piece by a
     * loaded worker): the words before the repetition starts are kept, and
     * then the previous pass's pending words that come after them.  A
     * fallback ladder here would cost up to six more decodes on a flush,
     * and tiny.en's loops over short buffers mostly survive it. */
    if ((quick || last) && result_loops(r, dec.compression_ratio_threshold)) {
        s->stats.n_skipped++;
        if (!last) {
            sotto__logf(s->m->log, s->m->log_user, SOTTO_LOG_DEBUG,
                        "stream pass: buffer %.2f..%.2f s loops; skipped",
                        base, base + secs);
            goto fail;
        }
        if ((rc = cut_loop(s, &hyp, base, secs)) != 0)
            goto fail;
    }
    if ((rc = sotto__agree_insert(&s->agree, hyp.v, hyp.n, last,
                                  &committed)) != 0)
        goto fail;
    if (!last && s->p.force_committed) {
        double upto = s->agree.last_end;
        if (s->replaying && (rc = replay_agree(s, &hyp, &upto)) != 0)
            goto fail;
        if ((rc = prefix_take(s, r, base, upto)) != 0)
            goto fail;
    }
    sotto__logf(s->m->log, s->m->log_user, SOTTO_LOG_DEBUG,
                "stream pass: buffer %.2f..%.2f s (%.1f s), %d tokens forced, "
                "%d words, %d committed, %d pending, %.3f s", base, base + secs,
                secs, n_forced, hyp.n, committed.n, s->agree.pending.n,
                now_seconds() - t0);
commit:
    if (last && (rc = sotto__agree_commit_pending(&s->agree, &committed)) != 0)
        goto fail;
    if (committed.n > 0 &&
        (rc = emit_words(s, SOTTO_EVENT_FINAL, committed.v, committed.n)) != 0)
        goto fail;
    if (!last) {
        char *text = join_words(s->agree.pending.v, s->agree.pending.n);
        if (text == NULL) {
            rc = SOTTO_ENOMEM;
            goto fail;
        }
        if (s->partial == NULL || strcmp(text, s->partial) != 0) {
            free(s->partial);
            s->partial = text;
            if ((rc = emit_words(s, SOTTO_EVENT_PARTIAL, s->agree.pending.v,
                                 s->agree.pending.n)) != 0)
                goto fail;
        } else {
            free(text);
        }
        if ((rc = trim(s, seg_end, n_seg)) != 0)
            goto fail;
    }
fail:
    free(ids);
    free(seg_end);
    sotto__wordvec_free(&hyp);
    sotto__wordvec_free(&committed);
    sotto_result_destroy(r);
    return rc;
}

static void utt_begin(sotto_stream *s, int64_t at)
{
    s->in_utt = 1;
    s->silence_at = -1;
    s->utt_speech = 0;
    s->utt_passes = 0;
    s->buf_n = 0;
    s->buf_start = at;
    s->since_pass = 0;
    s->n_pfx = 0;
    free(s->partial);
    s->partial = NULL;
}

/*
 * Closes the utterance.  With flush_pass a last pass runs over the buffer;
 * otherwise (cancel) the pending words are committed as they stand, or
 * dropped when `keep` is 0.  Short blips the VAD let through
 * (vad_min_speech_ms) are dropped without a pass, unless a pass already
 * showed words in them.
 */
static int utt_end(sotto_stream *s, int flush_pass, int keep)
{
    const int64_t min_speech = (int64_t)s->p.vad_min_speech_ms * SR / 1000;
    const double end = stream_time(s, s->buf_start + (int64_t)s->buf_n);
    int rc = 0, had_words, blip;

    if (!s->in_utt)
        return 0;
    had_words = s->agree.pending.n > 0 || s->agree.committed.n > s->n_resume;
    blip = s->p.vad && s->utt_speech < min_speech && !had_words;
    if (blip && s->n_resume > 0) {
        /* A blip before the resumed utterance goes on: keep the resume
         * words for it (and no utterance ends). */
        pre_push(s, s->buf, s->buf_n);
        s->buf_n = 0;
        s->in_utt = 0;
        free(s->partial);
        s->partial = NULL;
        return 0;
    }
    if (!blip) {
        if (flush_pass) {
            rc = run_pass(s, 1);
        } else if (keep) {
            sotto__wordvec out = { 0 };
            if ((rc = sotto__agree_commit_pending(&s->agree, &out)) == 0 &&
                out.n > 0)
                rc = emit_words(s, SOTTO_EVENT_FINAL, out.v, out.n);
            sotto__wordvec_free(&out);
        }
        if (rc == 0)
            rc = emit_simple(s, SOTTO_EVENT_UTTERANCE_END, end, 0, "");
        s->stats.n_utterances++;
        s->utt_id++;
    }
    if (rc == 0)
        rc = hist_take_committed(s, 1e300);
    sotto__agree_reset(&s->agree);
    s->n_resume = 0;
    replay_stop(s);
    s->n_pfx = 0;
    sotto__infer_destroy(s->st);
    s->st = NULL;
    /* The end of this utterance's audio is the pre-roll of the next. */
    pre_push(s, s->buf, s->buf_n);
    s->buf_n = 0;
    s->in_utt = 0;
    free(s->partial);
    s->partial = NULL;
    return rc;
}

/* ---- the gate ----------------------------------------------------------- */

/* Classifies one VAD frame and routes its samples. */
static int gate_frame(sotto_stream *s, const float *f, int64_t at, float prob)
{
    const float thr = s->p.vad_threshold;
    const float neg = thr - 0.15f > 0.01f ? thr - 0.15f : 0.01f;
    const int64_t min_silence = (int64_t)s->p.vad_min_silence_ms * SR / 1000;
    const int64_t pad = (int64_t)s->p.vad_speech_pad_ms * SR / 1000;
    int rc;

    if (!s->in_utt) {
        if (prob < thr) {
            pre_push(s, f, SOTTO__VAD_FRAME);
            return 0;
        }
        utt_begin(s, at - s->pre_n);
        if ((rc = buf_append(s, s->pre, (size_t)s->pre_n)) != 0)
            return rc;
        s->pre_n = 0;
        s->since_pass = 0;
    }
    if ((rc = buf_append(s, f, SOTTO__VAD_FRAME)) != 0)
        return rc;
    if (prob >= thr) {
        s->silence_at = -1;
        s->utt_speech += SOTTO__VAD_FRAME;
    } else if (prob < neg) {
        if (s->silence_at < 0)
            s->silence_at = at;
        if (at + SOTTO__VAD_FRAME - s->silence_at >= min_silence) {
            /* Keep pad samples of the pause; the rest is pre-roll. */
            int64_t keep_to = s->silence_at + pad;
            int64_t buf_end = s->buf_start + (int64_t)s->buf_n;
            if (keep_to < buf_end) {
                size_t tail = (size_t)(buf_end - keep_to);
                size_t kept = s->buf_n - tail;
                s->buf_n = kept;
                rc = utt_end(s, 1, 1);
                pre_push(s, s->buf + kept, tail);
                return rc;
            }
            return utt_end(s, 1, 1);
        }
    }
    return 0;
}

/* Whether the utterance is due for a pass.  Audio reaches the buffer in
 * whole VAD frames, so a 1 s feed brings 31 frames (0.992 s) and keeps the
 * rest for the next frame; the thresholds allow for that one frame, or a
 * 1 s cadence would get a pass only every other feed. */
static int pass_due(const sotto_stream *s)
{
    const int64_t slack = s->p.vad ? SOTTO__VAD_FRAME : 0;

    if (!s->in_utt || s->buf_n == 0)
        return 0;
    if (s->utt_passes == 0 && s->p.vad)
        return s->utt_speech + slack >= (int64_t)(s->p.first_chunk * SR);
    return (int64_t)s->since_pass + slack >= (int64_t)(s->p.min_chunk * SR);
}

/* Takes n samples of 16 kHz audio into the gate, running a pass when one
 * is due at the end of each piece. */
static int take16(sotto_stream *s, const float *x, size_t n)
{
    const size_t piece = (size_t)(SOTTO__STREAM_MAX_PIECE_S * SR);
    int rc;

    while (n > 0) {
        size_t k = n < piece ? n : piece;
        if (!s->p.vad) {
            if (!s->in_utt)
                utt_begin(s, s->n_in);
            if ((rc = buf_append(s, x, k)) != 0)
                return rc;
            s->n_in += (int64_t)k;
        } else {
            for (size_t i = 0; i < k;) {
                size_t c = (size_t)(SOTTO__VAD_FRAME - s->frame_fill);
                if (c > k - i)
                    c = k - i;
                memcpy(s->frame + s->frame_fill, x + i, c * sizeof *x);
                s->frame_fill += (int)c;
                i += c;
                s->n_in += (int64_t)c;
                if (s->frame_fill == SOTTO__VAD_FRAME) {
                    float prob;
                    double t0 = now_seconds();
                    rc = sotto__vad_step(s->vad, s->frame, &prob);
                    s->stats.compute_seconds += now_seconds() - t0;
                    s->frame_fill = 0;
                    if (rc != 0)
                        return rc;
                    if ((rc = gate_frame(s, s->frame,
                                         s->n_in - SOTTO__VAD_FRAME, prob)) != 0)
                        return rc;
                }
            }
        }
        if (pass_due(s) && (rc = run_pass(s, 0)) != 0)
            return rc;
        x += k;
        n -= k;
    }
    return 0;
}

/* Resamples (when needed) and takes the samples in. */
static int take(sotto_stream *s, const float *x, size_t n)
{
    float out[SOTTO__STREAM_BLOCK];
    int rc;

    if (s->soxr == NULL)
        return take16(s, x, n);
    do {
        size_t idone = 0, odone = 0;
        soxr_error_t e = soxr_process(s->soxr, x, n, &idone, out,
                                      SOTTO__ARRAY_LEN(out), &odone);
        if (e != NULL)
            return SOTTO_EINTERNAL;
        if (odone > 0 && (rc = take16(s, out, odone)) != 0)
            return rc;
        if (x != NULL) {
            x += idone;
            n -= idone;
        }
        if (x == NULL && odone == 0)
            break;
    } while (x == NULL || n > 0);
    return 0;
}

/* ---- the API ------------------------------------------------------------ */

static int check_params(const sotto_model *m, const sotto_stream_params *p,
                        char *err, size_t errcap)
{
    if (p->sample_rate < 8000 || p->sample_rate > 192000)
        return sotto__errf(err, errcap, SOTTO_EINVAL,
                           "sample_rate %d Hz is outside 8000 .. 192000",
                           p->sample_rate);
    if (!(p->min_chunk >= 0.1f && p->min_chunk <= 5.0f))
        return sotto__errf(err, errcap, SOTTO_EINVAL,
                           "min_chunk must be 0.1 .. 5 s");
    if (!(p->first_chunk >= 0.1f && p->first_chunk <= p->min_chunk))
        return sotto__errf(err, errcap, SOTTO_EINVAL,
                           "first_chunk must be 0.1 s .. min_chunk");
    if (!(p->buffer_trim >= 2.0f && p->buffer_trim <= 20.0f))
        return sotto__errf(err, errcap, SOTTO_EINVAL,
                           "buffer_trim must be 2 .. 20 s");
    if (!(p->vad_threshold > 0.0f && p->vad_threshold < 1.0f) ||
        p->vad_min_silence_ms < 64 || p->vad_min_silence_ms > 10000 ||
        p->vad_speech_pad_ms < 0 || p->vad_speech_pad_ms > 2000 ||
        p->vad_min_speech_ms < 0 || p->vad_min_speech_ms > 10000)
        return sotto__errf(err, errcap, SOTTO_EINVAL,
                           "VAD options out of range (threshold 0 .. 1, "
                           "min_silence 64 .. 10000 ms, pad 0 .. 2000 ms, "
                           "min_speech 0 .. 10000 ms)");
    if (p->vad && m->vad == NULL)
        return sotto__errf(err, errcap, SOTTO_EINVAL,
                           "the stream wants VAD but the model was loaded "
                           "without VAD weights (set vad_path, or vad = 0)");
    if (!(p->max_seconds >= 0.0) || !isfinite(p->time_offset) ||
        p->time_offset < 0.0)
        return sotto__errf(err, errcap, SOTTO_EINVAL,
                           "max_seconds and time_offset must be >= 0");
    if (p->n_resume_words < 0 || (p->n_resume_words > 0 && p->resume_words == NULL))
        return sotto__errf(err, errcap, SOTTO_EINVAL,
                           "n_resume_words must be >= 0, with resume_words set");
    for (int i = 0; i < p->n_resume_words; i++)
        if (p->resume_words[i].text == NULL || !isfinite(p->resume_words[i].start) ||
            !isfinite(p->resume_words[i].end))
            return sotto__errf(err, errcap, SOTTO_EINVAL,
                               "resume word %d has no text or a non-finite time", i);
    if (p->decode.beam_size < 1 || p->decode.beam_size > 16 ||
        p->decode.best_of < 1 || p->decode.best_of > 16 ||
        p->decode.n_temperatures < 1 ||
        p->decode.n_temperatures > SOTTO_MAX_TEMPERATURES)
        return sotto__errf(err, errcap, SOTTO_EINVAL,
                           "decode: beam_size and best_of must be 1..16 and "
                           "1..%d temperatures given", SOTTO_MAX_TEMPERATURES);
    if (!m->multilingual && p->decode.language != NULL &&
        strcmp(p->decode.language, "en") != 0)
        return sotto__errf(err, errcap, SOTTO_EINVAL,
                           "this model is English-only; language \"%s\" is "
                           "not available", p->decode.language);
    return 0;
}

int sotto_stream_create(const sotto_model *m, const sotto_stream_params *params,
                        sotto_stream **out, char *err, size_t errcap)
{
    sotto_stream_params defaults = sotto_stream_default_params();
    sotto_stream *s = NULL;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (out == NULL || m == NULL)
        return sotto__errf(err, errcap, SOTTO_EINVAL, "no model or stream given");
    if (params == NULL)
        params = &defaults;
    if ((rc = check_params(m, params, err, errcap)) != 0)
        return rc;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
    s->m = m;
    s->p = *params;
    if (s->p.max_seconds == 0.0 || s->p.max_seconds > SOTTO_MAX_AUDIO_SECONDS)
        s->p.max_seconds = SOTTO_MAX_AUDIO_SECONDS;
    s->dec = params->decode;
    s->dec.word_timestamps = 1;
    s->dec.without_timestamps = 0;
    s->dec.initial_prompt = NULL;
    s->dec.language = NULL;
    s->rng = params->decode.seed;
    s->lang_token = -1;
    s->utt_id = params->first_utterance;
    s->silence_at = -1;
    sotto__agree_init(&s->agree);
    sotto__agree_init(&s->replay);
    s->pre_cap = params->vad_speech_pad_ms * SR / 1000;
    if (s->pre_cap > 0 && (s->pre = malloc((size_t)s->pre_cap * sizeof *s->pre)) == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
        goto fail;
    }
    if (s->p.vad && (rc = sotto__vad_create(m->vad, &s->vad)) != 0) {
        sotto__errf(err, errcap, rc, "cannot allocate the VAD state");
        goto fail;
    }
    if (s->p.sample_rate != SR) {
        soxr_error_t e = NULL;
        soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
        soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
        soxr_runtime_spec_t rt = soxr_runtime_spec(1);
        s->soxr = soxr_create((double)s->p.sample_rate, (double)SR, 1, &e,
                              &io, &q, &rt);
        if (s->soxr == NULL || e != NULL) {
            rc = sotto__errf(err, errcap, SOTTO_ENOMEM,
                             "cannot create a %d -> %d Hz resampler: %s",
                             s->p.sample_rate, SR, soxr_strerror(e));
            goto fail;
        }
    }
    if (params->decode.language != NULL) {
        char name[64];
        snprintf(name, sizeof name, "<|%s|>", params->decode.language);
        if (m->multilingual &&
            (s->lang_token = sotto__tokenizer_find(m->tok, name)) < 0) {
            rc = sotto__errf(err, errcap, SOTTO_EINVAL, "unknown language \"%s\"",
                             params->decode.language);
            goto fail;
        }
    }
    if (params->decode.initial_prompt != NULL &&
        params->decode.initial_prompt[0] != 0 &&
        ((rc = hist_append(s, " ")) != 0 ||
         (rc = hist_append(s, params->decode.initial_prompt)) != 0)) {
        sotto__errf(err, errcap, rc, "out of memory");
        goto fail;
    }
    if (params->n_resume_words > 0) {
        int k = params->n_resume_words, i0 = 0;
        if (k > SOTTO_MAX_RESUME_WORDS)
            i0 = k - SOTTO_MAX_RESUME_WORDS;
        for (int i = i0; i < k; i++) {
            const sotto_word *w = &params->resume_words[i];
            if ((rc = sotto__wordvec_push(&s->agree.committed, w->start, w->end,
                                          w->text, w->probability)) != 0) {
                sotto__errf(err, errcap, rc, "out of memory");
                goto fail;
            }
            if (w->end > s->agree.last_end)
                s->agree.last_end = w->end;
        }
        s->n_resume = s->agree.committed.n;
        s->replaying = s->n_resume > 0;
        s->resume_end = s->agree.last_end;
    }
    *out = s;
    return 0;
fail:
    sotto_stream_destroy(s);
    return rc;
}

void sotto_stream_destroy(sotto_stream *s)
{
    if (s == NULL)
        return;
    sotto__infer_destroy(s->st);
    sotto__vad_destroy(s->vad);
    if (s->soxr != NULL)
        soxr_delete(s->soxr);
    sotto__agree_free(&s->agree);
    sotto__agree_free(&s->replay);
    for (int i = s->head; i < s->n; i++)
        event_free(&s->queue[i]);
    event_free(&s->cur);
    free(s->queue);
    free(s->partial);
    free(s->hist);
    free(s->buf);
    free(s->pre);
    free(s);
}

static int refuse(sotto_stream *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(sotto_stream *s, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    sotto__logf(s->m->log, s->m->log_user, SOTTO_LOG_WARN, "stream: %s",
                s->err);
    return code;
}

/* The common checks of both feeds; *n_take is how many samples fit before
 * max_seconds. */
static int feed_check(sotto_stream *s, const void *pcm, ptrdiff_t n,
                      int rate, size_t *n_take)
{
    double room;

    if (s == NULL)
        return SOTTO_EINVAL;
    s->err[0] = 0;
    if (n < 0)
        return refuse(s, SOTTO_EINVAL, "negative sample count %td", n);
    if (pcm == NULL && n > 0)
        return refuse(s, SOTTO_EINVAL, "no audio buffer given");
    if (rate != 0 && rate != s->p.sample_rate)
        return refuse(s, SOTTO_EINVAL,
                      "audio at %d Hz fed to a stream created for %d Hz",
                      rate, s->p.sample_rate);
    if (s->ended)
        return refuse(s, SOTTO_EINVAL, "the stream has ended; no more audio "
                      "is taken");
    room = s->p.max_seconds * s->p.sample_rate - (double)s->n_fed;
    *n_take = (double)n > room ? (size_t)(room > 0 ? room : 0) : (size_t)n;
    return 0;
}

/* After a feed cut short by max_seconds: ends the stream with a flush. */
static int feed_deadline(sotto_stream *s, size_t n, size_t taken)
{
    int rc;

    if (taken == n)
        return 0;
    if ((rc = sotto_stream_finish(s)) != 0)
        return rc;
    return refuse(s, SOTTO_ETOOLONG,
                  "the stream reached its limit of %.0f s; the audio after "
                  "it was refused and the stream has ended", s->p.max_seconds);
}

static int fail_internal(sotto_stream *s, int rc)
{
    /* Only allocation failures should get here (the feed checked the
     * samples); report and keep the stream. */
    emit_simple(s, SOTTO_EVENT_ERROR, stream_time(s, s->n_in), rc,
                sotto_strerror(rc));
    return refuse(s, rc, "%s", sotto_strerror(rc));
}

int sotto_stream_feed(sotto_stream *s, const float *pcm, ptrdiff_t n,
                      int sample_rate)
{
    size_t take_n = 0;
    int rc;

    if ((rc = feed_check(s, pcm, n, sample_rate, &take_n)) != 0)
        return rc;
    for (size_t i = 0; i < (size_t)n; i++) {
        if (!isfinite(pcm[i]))
            return refuse(s, SOTTO_ENONFINITE,
                          "sample %zu of this call is %s; the call's audio "
                          "was refused", i, isnan(pcm[i]) ? "NaN" : "infinite");
        if (fabsf(pcm[i]) > SOTTO_MAX_SAMPLE)
            return refuse(s, SOTTO_EINVAL,
                          "sample %zu of this call is %g, beyond the largest "
                          "magnitude taken (%g; audio is in [-1, 1]); the call's "
                          "audio was refused", i, (double)pcm[i], (double)SOTTO_MAX_SAMPLE);
    }
    s->n_fed += (int64_t)take_n;
    s->stats.audio_seconds = (double)s->n_fed / s->p.sample_rate;
    if (take_n > 0 && (rc = take(s, pcm, take_n)) != 0)
        return fail_internal(s, rc);
    return feed_deadline(s, (size_t)n, take_n);
}

int sotto_stream_feed_s16(sotto_stream *s, const int16_t *pcm, ptrdiff_t n,
                          int sample_rate)
{
    float x[SOTTO__STREAM_BLOCK];
    size_t take_n = 0;
    int rc;

    if ((rc = feed_check(s, pcm, n, sample_rate, &take_n)) != 0)
        return rc;
    s->n_fed += (int64_t)take_n;
    s->stats.audio_seconds = (double)s->n_fed / s->p.sample_rate;
    for (size_t i = 0; i < take_n;) {
        size_t k = take_n - i < SOTTO__ARRAY_LEN(x) ? take_n - i
                                                    : SOTTO__ARRAY_LEN(x);
        for (size_t j = 0; j < k; j++)
            x[j] = (float)pcm[i + j] / 32768.0f;
        if ((rc = take(s, x, k)) != 0)
            return fail_internal(s, rc);
        i += k;
    }
    return feed_deadline(s, (size_t)n, take_n);
}

int sotto_stream_finish(sotto_stream *s)
{
    int rc;

    if (s == NULL)
        return SOTTO_EINVAL;
    if (s->ended)
        return 0;
    s->ended = 1;
    if (s->soxr != NULL && (rc = take(s, NULL, 0)) != 0)
        return fail_internal(s, rc);
    /* The samples short of a whole VAD frame belong to an open utterance. */
    if (s->frame_fill > 0 && s->in_utt &&
        (rc = buf_append(s, s->frame, (size_t)s->frame_fill)) != 0)
        return fail_internal(s, rc);
    s->frame_fill = 0;
    if ((rc = utt_end(s, 1, 1)) != 0)
        return fail_internal(s, rc);
    return 0;
}

int sotto_stream_cancel(sotto_stream *s, int flush)
{
    int rc;

    if (s == NULL)
        return SOTTO_EINVAL;
    /* A flush must not lose the speech that came in after the latest
     * pass (up to min_chunk of it, or a whole utterance that never reached
     * its first pass), so it ends the stream the way finish does. */
    if (flush)
        return sotto_stream_finish(s);
    if (s->ended)
        return 0;
    s->ended = 1;
    if ((rc = utt_end(s, 0, 0)) != 0)
        return fail_internal(s, rc);
    return 0;
}

int sotto_stream_end_utterance(sotto_stream *s, int flush)
{
    int rc;

    if (s == NULL)
        return SOTTO_EINVAL;
    if (s->ended)
        return refuse(s, SOTTO_EINVAL, "the stream has ended");
    if ((rc = utt_end(s, flush, 0)) != 0)
        return fail_internal(s, rc);
    return 0;
}

int sotto_stream_poll(sotto_stream *s, sotto_event *ev)
{
    stream_event *e;

    if (s == NULL || ev == NULL)
        return 0;
    event_free(&s->cur);
    memset(ev, 0, sizeof *ev);
    if (s->head >= s->n)
        return 0;
    s->cur = s->queue[s->head++];
    e = &s->cur;
    ev->type = e->type;
    ev->utterance = e->utterance;
    ev->start = e->start;
    ev->end = e->end;
    ev->audio_time = e->audio_time;
    ev->text = e->text != NULL ? e->text : "";
    ev->words = e->words;
    ev->n_words = e->n_words;
    ev->code = e->code;
    return 1;
}

const char *sotto_stream_error(const sotto_stream *s)
{
    return s != NULL ? s->err : "no stream";
}

void sotto_stream_get_stats(const sotto_stream *s, sotto_stream_stats *st)
{
    memset(st, 0, sizeof *st);
    if (s == NULL)
        return;
    *st = s->stats;
    st->buffer_seconds = (double)s->buf_n / SR;
    st->committed_until = s->agree.last_end > 0 ? s->agree.last_end : 0.0;
    st->retained_from = s->in_utt
        ? stream_time(s, s->buf_start)
        : stream_time(s, s->n_in - s->frame_fill - s->pre_n);
}
