/*
 * transcribe.c - offline transcription of a whole recording: the seek loop
 * over 30-second windows, temperature fallback, segmenting by timestamps,
 * and the result object.
 *
 * The loop follows faster-whisper's generate_segments so that the same
 * model gives the same tokens: the log-mel of the whole input (plus 160
 * zero samples) is computed once with one global dynamic-range floor; each
 * window is the next 3000 frames, zero-padded in the log-mel domain; the
 * prompt is <|startofprev|> + the last 223 tokens of earlier output (unless
 * reset) + the sot sequence; after decoding, the window is cut into
 * segments at pairs of consecutive timestamps and the next window starts
 * at the last timestamp (or after the window, when the output ends with a
 * single timestamp or has none).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "common/common.h"
#include "engine/align.h"
#include "engine/decode.h"
#include "engine/result.h"
#include "engine/transcribe.h"
#include "engine/whisper.h"

#define N_FRAMES_WINDOW 3000         /* 30 s of 10 ms frames */
#define INPUT_STRIDE 2               /* mel frames per encoder position */
#define TIME_PRECISION 0.02          /* seconds per timestamp token */
#define FRAME_SECONDS 0.01

sotto_transcribe_params sotto_transcribe_default_params(void)
{
    sotto_transcribe_params p;
    static const float temps[] = { 0.0f, 0.2f, 0.4f, 0.6f, 0.8f, 1.0f };

    memset(&p, 0, sizeof p);
    p.beam_size = 5;
    p.best_of = 5;
    p.patience = 1.0f;
    p.length_penalty = 1.0f;
    memcpy(p.temperatures, temps, sizeof temps);
    p.n_temperatures = (int)SOTTO__ARRAY_LEN(temps);
    p.compression_ratio_threshold = 2.4f;
    p.log_prob_threshold = -1.0f;
    p.no_speech_threshold = 0.6f;
    p.condition_on_previous_text = 1;
    p.prompt_reset_on_temperature = 0.5f;
    p.max_initial_timestamp = 1.0f;
    p.suppress_blank = 1;
    p.seed = 0x736f74746fULL;
    return p;
}

/* len(text) / len(zlib(text)), as faster-whisper computes it. */
static float compression_ratio(const char *text)
{
    size_t n = strlen(text);
    uLongf out_len = compressBound((uLong)n);
    unsigned char *out;
    float r = 0.0f;

    if (n == 0)
        return 0.0f;
    out = malloc(out_len);
    if (out == NULL)
        return 0.0f;
    if (compress2(out, &out_len, (const Bytef *)text, (uLong)n,
                  Z_DEFAULT_COMPRESSION) == Z_OK && out_len > 0)
        r = (float)n / (float)out_len;
    free(out);
    return r;
}

/* Decodes tokens to a fresh string (text tokens only). */
static char *decode_text(const struct sotto_model *m, const int *ids, int n)
{
    int need = sotto__tokenizer_decode(m->tok, ids, n, m->sp.eot, NULL, 0);
    char *s;

    if (need < 0)
        return NULL;
    s = malloc((size_t)need + 1);
    if (s != NULL)
        sotto__tokenizer_decode(m->tok, ids, n, m->sp.eot, s, (size_t)need + 1);
    return s;
}

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return 0;
    return 1;
}

/* Strips leading and trailing ASCII spaces in place; returns s + skip. */
static const char *strip(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n'))
        s[--n] = 0;
    while (*s == ' ' || *s == '\n')
        s++;
    return s;
}

/* A growable token history. */
typedef struct tokvec {
    int *v;
    int n, cap;
} tokvec;

static int tokvec_push(tokvec *t, const int *ids, int n)
{
    if (t->n + n > t->cap) {
        int cap = t->cap ? t->cap : 1024;
        int *nv;
        while (cap < t->n + n)
            cap *= 2;
        nv = realloc(t->v, (size_t)cap * sizeof *nv);
        if (nv == NULL)
            return SOTTO_ENOMEM;
        t->v = nv;
        t->cap = cap;
    }
    memcpy(t->v + t->n, ids, (size_t)n * sizeof *ids);
    t->n += n;
    return 0;
}

/* The decoded window chosen by the fallback loop. */
typedef struct window_result {
    sotto__gen_result gen;
    float temperature;
    float compression_ratio;
} window_result;

/* Runs the temperature ladder for one window. */
static int generate_with_fallback(sotto__infer *st, const int *prompt,
                                  int n_prompt, int sot_index,
                                  const int *prefix, int n_prefix,
                                  const sotto_transcribe_params *p,
                                  uint64_t *rng, window_result *out)
{
    const struct sotto_model *m = st->m;
    window_result *all = NULL;
    int n_all = 0, best = -1, rc = 0, n_temps = p->n_temperatures;
    float last_t = 0.0f;

    if (n_temps <= 0 || n_temps > SOTTO_MAX_TEMPERATURES)
        return SOTTO_EINVAL;
    all = calloc((size_t)n_temps, sizeof *all);
    if (all == NULL)
        return SOTTO_ENOMEM;
    for (int i = 0; i < n_temps; i++) {
        sotto__gen_opts o;
        window_result *w = &all[n_all];
        int needs_fallback = 0;
        char *text;

        memset(&o, 0, sizeof o);
        o.temperature = p->temperatures[i];
        o.beam_size = p->beam_size > 0 ? p->beam_size : 1;
        o.best_of = p->best_of > 0 ? p->best_of : 1;
        o.patience = p->patience;
        o.length_penalty = p->length_penalty;
        o.suppress_blank = p->suppress_blank;
        o.without_timestamps = p->without_timestamps;
        o.max_initial_timestamp_index =
            p->max_initial_timestamp >= 0.0f
                ? (int)lround(p->max_initial_timestamp / TIME_PRECISION) : -1;
        /* CTranslate2's limit: half the text context, and no position past
         * its end (the last sampled token is never fed back). */
        o.max_new_tokens = m->n_text_ctx / 2;
        if (o.max_new_tokens > m->n_text_ctx - n_prompt + 1)
            o.max_new_tokens = m->n_text_ctx - n_prompt + 1;
        if (p->max_new_tokens > 0 && p->max_new_tokens < o.max_new_tokens)
            o.max_new_tokens = p->max_new_tokens;
        o.rng = rng;
        o.prefix = prefix;
        o.n_prefix = n_prefix;
        if ((rc = sotto__generate(st, prompt, n_prompt, sot_index, &o, &w->gen)))
            goto fail;
        w->temperature = o.temperature;
        last_t = o.temperature;
        text = decode_text(m, w->gen.tokens, w->gen.n_tokens);
        if (text == NULL) {
            rc = SOTTO_ENOMEM;
            goto fail;
        }
        w->compression_ratio = compression_ratio(strip(text));
        free(text);
        n_all++;

        if (p->compression_ratio_threshold > 0.0f &&
            w->compression_ratio > p->compression_ratio_threshold)
            needs_fallback = 1;
        if (w->gen.avg_logprob < p->log_prob_threshold)
            needs_fallback = 1;
        if (p->no_speech_threshold >= 0.0f &&
            w->gen.no_speech_prob > p->no_speech_threshold &&
            w->gen.avg_logprob < p->log_prob_threshold)
            needs_fallback = 0;             /* silence: keep it */
        if (!needs_fallback) {
            *out = *w;
            goto done;
        }
    }
    /* Every temperature failed: take the best average log-probability,
     * preferring results under the compression threshold. */
    for (int pass = 0; pass < 2 && best < 0; pass++)
        for (int i = 0; i < n_all; i++) {
            if (pass == 0 && p->compression_ratio_threshold > 0.0f &&
                all[i].compression_ratio > p->compression_ratio_threshold)
                continue;
            if (best < 0 || all[i].gen.avg_logprob > all[best].gen.avg_logprob)
                best = i;
        }
    *out = all[best];
    out->temperature = last_t;
done:
fail:
    free(all);
    return rc;
}

/* Builds the decoder prompt for a window: the previous text, the sot
 * sequence, then the forced prefix.  *sot_len is the length of the sot
 * sequence (from *sot_index, <|notimestamps|> included). */
static int build_prompt(const struct sotto_model *m, const int *prev,
                        int n_prev, const int *prefix, int n_prefix,
                        int lang_token, const sotto_transcribe_params *p,
                        int *prompt, int *sot_index, int *sot_len)
{
    const int max_prev = m->n_text_ctx / 2 - 1;
    int n = 0, n_all = n_prev;

    if (n_prev > 0) {
        if (n_prev > max_prev)
            n_prev = max_prev;
        prompt[n++] = m->sp.sot_prev;
        memcpy(prompt + n, prev + n_all - n_prev, (size_t)n_prev * sizeof(int));
        n += n_prev;
    }
    *sot_index = n;
    prompt[n++] = m->sp.sot;
    if (m->multilingual) {
        prompt[n++] = lang_token;
        prompt[n++] = m->sp.transcribe;
    }
    if (p->without_timestamps)
        prompt[n++] = m->sp.no_timestamps;
    *sot_len = n - *sot_index;
    if (n_prefix > 0 && !p->without_timestamps) {
        memcpy(prompt + n, prefix, (size_t)n_prefix * sizeof *prompt);
        n += n_prefix;
    }
    return n;
}

/* Finds the language token: the given code, or the likeliest language of
 * the current window. */
static int choose_language(sotto__infer *st, const char *code, int *out)
{
    const struct sotto_model *m = st->m;
    char name[64];
    float *logits;
    int best = -1, rc;

    if (code != NULL) {
        snprintf(name, sizeof name, "<|%s|>", code);
        *out = sotto__tokenizer_find(m->tok, name);
        return *out >= 0 ? 0 : SOTTO_EINVAL;
    }
    if (m->sp.n_langs == 0)
        return SOTTO_EUNSUPPORTED;
    logits = malloc((size_t)m->n_vocab * sizeof *logits);
    if (logits == NULL)
        return SOTTO_ENOMEM;
    sotto__decode_truncate(st, 0);
    rc = sotto__decode(st, 1, 1, &m->sp.sot, logits, NULL);
    for (int i = 0; rc == 0 && i < m->sp.n_langs; i++) {
        int id = m->sp.lang_first + i;
        if (best < 0 || logits[id] > logits[best])
            best = id;
    }
    free(logits);
    *out = best;
    return rc;
}

/*
 * Cuts a window's tokens into segments at consecutive timestamps and
 * returns the seek advance in frames, as faster-whisper's
 * _split_segments_by_timestamps does.
 */
static int split_segments(sotto__result *r, const struct sotto_model *m,
                          const window_result *w, double time_offset,
                          int segment_size, int *seek_advance,
                          int *first_new, int *single_timestamp_ending)
{
    const int *tok = w->gen.tokens, n = w->gen.n_tokens;
    const int tb = m->sp.timestamp_begin;
    const int single_ending = n >= 2 && tok[n - 2] < tb && tok[n - 1] >= tb;
    int last_slice = 0, any_consecutive = 0, rc;

    *first_new = r->n_segments;
    *single_timestamp_ending = single_ending;
    for (int i = 1; i < n; i++) {
        if (tok[i] >= tb && tok[i - 1] >= tb) {
            any_consecutive = 1;
            if ((rc = sotto__result_add(r, m, tok + last_slice, i - last_slice,
                    time_offset + (tok[last_slice] - tb) * TIME_PRECISION,
                    time_offset + (tok[i - 1] - tb) * TIME_PRECISION)) != 0)
                return rc;
            last_slice = i;
        }
    }
    if (any_consecutive) {
        if (single_ending) {
            if ((rc = sotto__result_add(r, m, tok + last_slice, n - last_slice,
                    time_offset + (tok[last_slice] - tb) * TIME_PRECISION,
                    time_offset + (tok[n - 1] - tb) * TIME_PRECISION)) != 0)
                return rc;
            *seek_advance = segment_size;
        } else {
            *seek_advance = (tok[last_slice - 1] - tb) * INPUT_STRIDE;
        }
    } else {
        double duration = segment_size * FRAME_SECONDS;
        int last_ts = -1;
        for (int i = 0; i < n; i++)
            if (tok[i] >= tb)
                last_ts = tok[i];
        if (last_ts >= 0 && last_ts != tb)
            duration = (last_ts - tb) * TIME_PRECISION;
        if ((rc = sotto__result_add(r, m, tok, n, time_offset,
                                    time_offset + duration)) != 0)
            return rc;
        *seek_advance = segment_size;
    }
    return 0;
}

/* The end of the last word of segments first.. (or of the last segment
 * when none has words): faster-whisper's get_end(). */
static double last_word_end(const sotto__result *r, int first)
{
    for (int i = r->n_segments - 1; i >= first; i--)
        if (r->segments[i].n_words > 0)
            return r->segments[i].words[r->segments[i].n_words - 1].end;
    return r->segments[r->n_segments - 1].end;
}

/*
 * One window through the network.  The caller lays out the window's log-mel
 * (n_mels rows of `stride` columns, the first segment_size of them real
 * audio) and asks for enc_frames columns to be encoded: 3000 for the
 * offline loop, fewer when streaming runs the encoder on the real length.
 */
typedef struct window_io {
    const float *window;      /* [n_mels, stride] */
    int stride;
    int enc_frames;           /* even, <= stride */
    int segment_size;         /* real frames in the window */
    double time_offset;       /* seconds at column 0 */
    const int *prev;          /* earlier text tokens for the prompt */
    int n_prev;
    const int *prefix;        /* forced first tokens of the transcript */
    int n_prefix;
    double last_speech;       /* in: end of the last word so far; out: updated */
    int advance;              /* out: frames to move the seek by */
    int silent;               /* out: 1 when the window was judged silent */
    float temperature;        /* out: the temperature that was kept */
} window_io;

static int process_window(sotto__infer *st, const sotto_transcribe_params *p,
                          window_io *io, int *lang_token, int *prompt,
                          uint64_t *rng, sotto__result *r, tokvec *hist,
                          char *err, size_t errcap)
{
    const struct sotto_model *m = st->m;
    const double time_offset = io->time_offset;
    window_result w;
    int rc, n_prompt, sot_index, sot_len, first_new, single_ending = 0;
    int n_prefix = p->without_timestamps ? 0 : io->n_prefix;

    io->advance = io->segment_size;
    io->silent = 0;
    io->temperature = 0.0f;
    if ((rc = sotto__encode(st, io->window, io->stride, io->enc_frames)) != 0)
        return sotto__errf(err, errcap, rc, "encoder failed: %s",
                           sotto_strerror(rc));
    /* The language is chosen once, on the first window (faster-whisper
     * detects it on the first 30 s too). */
    if (m->multilingual && *lang_token < 0) {
        if ((rc = choose_language(st, p->language, lang_token)) != 0)
            return sotto__errf(err, errcap, rc, "unknown language \"%s\"",
                               p->language ? p->language : "(detect)");
    }
    n_prompt = build_prompt(m, io->prev, io->n_prev, io->prefix, n_prefix,
                            *lang_token, p, prompt, &sot_index, &sot_len);
    if ((rc = generate_with_fallback(st, prompt, n_prompt, sot_index,
                                     prompt + n_prompt - n_prefix, n_prefix,
                                     p, rng, &w)) != 0)
        return sotto__errf(err, errcap, rc, "decoding failed at %.2f s: %s",
                           time_offset, sotto_strerror(rc));
    io->temperature = w.temperature;

    if (p->no_speech_threshold >= 0.0f &&
        w.gen.no_speech_prob > p->no_speech_threshold &&
        !(w.gen.avg_logprob > p->log_prob_threshold)) {
        io->silent = 1;                    /* a silent window */
        return 0;
    }

    if ((rc = split_segments(r, m, &w, time_offset, io->segment_size,
                             &io->advance, &first_new, &single_ending)) != 0)
        return sotto__errf(err, errcap, rc, "out of memory");

    if (p->word_timestamps && r->n_segments > first_new) {
        double end;
        if ((rc = sotto__align_words(st, r, first_new, prompt + sot_index,
                                     sot_len - (p->without_timestamps ? 1 : 0),
                                     time_offset, io->segment_size,
                                     io->last_speech)) != 0)
            return sotto__errf(err, errcap, rc, "word alignment failed: %s",
                               sotto_strerror(rc));
        /* With words, the next window starts at the last word's end
         * unless the window ended on a single timestamp (then speech
         * had stopped), as faster-whisper does. */
        end = last_word_end(r, first_new);
        if (!single_ending && end > time_offset)
            io->advance = (int)nearbyint(end * 100.0) -
                          (int)nearbyint(time_offset * 100.0);
        io->last_speech = end;
    }

    /* Keep the non-empty segments; their tokens extend the history. */
    for (int i = first_new; i < r->n_segments; i++) {
        sotto_segment *s = &r->segments[i];
        if (s->start == s->end || is_blank(s->text)) {
            sotto__result_drop(r, i);
            i--;
            continue;
        }
        s->avg_logprob = (float)w.gen.avg_logprob;
        s->no_speech_prob = w.gen.no_speech_prob;
        s->compression_ratio = w.compression_ratio;
        s->temperature = w.temperature;
        if (hist != NULL && (rc = tokvec_push(hist, s->tokens, s->n_tokens)) != 0)
            return sotto__errf(err, errcap, rc, "out of memory");
    }
    return 0;
}

int sotto__validate_pcm(const float *pcm, size_t n, char *err, size_t errcap)
{
    if (pcm == NULL && n > 0)
        return sotto__errf(err, errcap, SOTTO_EINVAL, "no audio buffer given");
    if (n == 0)
        return sotto__errf(err, errcap, SOTTO_EEMPTY, "the audio has no samples");
    if (n > (size_t)SOTTO_MAX_AUDIO_SECONDS * SOTTO_SAMPLE_RATE)
        return sotto__errf(err, errcap, SOTTO_ETOOLONG,
                           "the audio lasts %.0f s; the limit is %d s",
                           (double)n / SOTTO_SAMPLE_RATE, SOTTO_MAX_AUDIO_SECONDS);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(pcm[i]))
            return sotto__errf(err, errcap, SOTTO_ENONFINITE,
                               "sample %zu (at %.3f s) is %s", i,
                               (double)i / SOTTO_SAMPLE_RATE,
                               isnan(pcm[i]) ? "NaN" : "infinite");
    return 0;
}

int sotto_transcribe(const sotto_model *m, const float *pcm, size_t n,
                     const sotto_transcribe_params *params,
                     sotto_result **out, char *err, size_t errcap)
{
    sotto_transcribe_params defaults = sotto_transcribe_default_params();
    const sotto_transcribe_params *p = params ? params : &defaults;
    sotto__infer *st = NULL;
    sotto__result *r = NULL;
    float *mel = NULL, *window = NULL;
    size_t n_frames = 0;
    tokvec hist = { 0 };
    int *prompt = NULL;
    int rc, seek = 0, content_frames, since = 0, lang_token = -1;
    int n_seq;
    uint64_t rng = p->seed;
    double last_speech = 0.0;

    if (out == NULL || m == NULL)
        return sotto__errf(err, errcap, SOTTO_EINVAL, "no model or result given");
    *out = NULL;
    if ((rc = sotto__validate_pcm(pcm, n, err, errcap)) != 0)
        return rc;
    if (p->beam_size < 1 || p->beam_size > 16 || p->best_of < 1 ||
        p->best_of > 16 || p->n_temperatures < 1 ||
        p->n_temperatures > SOTTO_MAX_TEMPERATURES)
        return sotto__errf(err, errcap, SOTTO_EINVAL,
                           "beam_size and best_of must be 1..16 and 1..%d "
                           "temperatures given", SOTTO_MAX_TEMPERATURES);
    if (!m->multilingual && p->language != NULL && strcmp(p->language, "en") != 0)
        return sotto__errf(err, errcap, SOTTO_EINVAL,
                           "this model is English-only; language \"%s\" is "
                           "not available", p->language);

    n_seq = p->beam_size > p->best_of ? p->beam_size : p->best_of;
    r = sotto__result_create((double)n / SOTTO_SAMPLE_RATE);
    prompt = malloc((size_t)m->n_text_ctx * sizeof *prompt);
    window = calloc((size_t)m->n_mels * N_FRAMES_WINDOW, sizeof *window);
    if (r == NULL || prompt == NULL || window == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = sotto__infer_create(m, n_seq, &st)) != 0) {
        sotto__errf(err, errcap, rc, "cannot allocate the decoder state");
        goto fail;
    }
    if ((rc = sotto__mel_compute(m->mel, pcm, n, 160, m->n_threads, &mel, &n_frames)) != 0) {
        sotto__errf(err, errcap, rc, "log-mel front end failed: %s",
                    sotto_strerror(rc));
        goto fail;
    }
    content_frames = (int)n_frames - 1;

    if (p->initial_prompt != NULL && p->initial_prompt[0] != 0) {
        /* " " + the prompt, stripped, conditions the first window. */
        size_t len = strlen(p->initial_prompt);
        char *text = malloc(len + 2);
        int cnt;
        if (text == NULL) {
            rc = sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
            goto fail;
        }
        text[0] = ' ';
        memcpy(text + 1, p->initial_prompt, len + 1);
        {
            char *s = text + 1;
            const char *t = strip(s);
            memmove(s, t, strlen(t) + 1);
        }
        cnt = sotto__tokenizer_encode(m->tok, text, NULL, 0);
        if (cnt >= 0) {
            int *ids = malloc(((size_t)cnt + 1) * sizeof *ids);
            if (ids == NULL) {
                free(text);
                rc = sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
                goto fail;
            }
            sotto__tokenizer_encode(m->tok, text, ids, cnt);
            rc = tokvec_push(&hist, ids, cnt);
            free(ids);
        } else {
            rc = cnt;
        }
        free(text);
        if (rc != 0) {
            sotto__errf(err, errcap, rc, "cannot encode the initial prompt: %s",
                        sotto_strerror(rc));
            goto fail;
        }
    }

    while (seek < content_frames) {
        const int segment_size = content_frames - seek < N_FRAMES_WINDOW
                                     ? content_frames - seek : N_FRAMES_WINDOW;
        window_io io;
        const int first = r->n_segments;

        for (int c = 0; c < m->n_mels; c++) {
            memcpy(window + (size_t)c * N_FRAMES_WINDOW, mel + (size_t)c * n_frames + seek,
                   (size_t)segment_size * sizeof *window);
            memset(window + (size_t)c * N_FRAMES_WINDOW + segment_size, 0,
                   (size_t)(N_FRAMES_WINDOW - segment_size) * sizeof *window);
        }
        memset(&io, 0, sizeof io);
        io.window = window;
        io.stride = N_FRAMES_WINDOW;
        io.enc_frames = N_FRAMES_WINDOW;
        io.segment_size = segment_size;
        io.time_offset = seek * FRAME_SECONDS;
        io.prev = hist.v + since;
        io.n_prev = hist.n - since;
        io.last_speech = last_speech;
        if ((rc = process_window(st, p, &io, &lang_token, prompt, &rng, r,
                                 &hist, err, errcap)) != 0)
            goto fail;
        seek += io.advance;
        last_speech = io.last_speech;
        if (p->on_window != NULL)
            p->on_window(p->on_window_user, r->segments + first, r->n_segments - first,
                         (seek < content_frames ? seek : content_frames) * FRAME_SECONDS);
        if (!io.silent && (!p->condition_on_previous_text ||
                           io.temperature > p->prompt_reset_on_temperature))
            since = hist.n;
    }

    if ((rc = sotto__result_finish(r)) != 0) {
        sotto__errf(err, errcap, rc, "out of memory");
        goto fail;
    }
    *out = r;
    r = NULL;
fail:
    sotto_result_destroy(r);
    sotto__infer_destroy(st);
    free(mel);
    free(window);
    free(prompt);
    free(hist.v);
    return rc;
}

int sotto__transcribe_window(sotto__infer *st, const float *pcm, size_t n,
                             const int *prev, int n_prev, const int *prefix,
                             int n_prefix, int pad_frames,
                             const sotto_transcribe_params *p, int *lang_token,
                             uint64_t *rng, sotto__result *r, char *err,
                             size_t errcap)
{
    const struct sotto_model *m = st->m;
    float *mel = NULL, *window = NULL;
    int *prompt = NULL;
    size_t n_frames = 0;
    int rc, content_frames, enc_frames;
    window_io io;

    if (pcm == NULL || n == 0 || n > SOTTO__WINDOW_SAMPLES)
        return sotto__errf(err, errcap, SOTTO_EINVAL,
                           "a streaming pass takes 1 to %d samples, not %zu",
                           SOTTO__WINDOW_SAMPLES, n);
    if ((rc = sotto__mel_compute(m->mel, pcm, n, 160, m->n_threads, &mel, &n_frames)) != 0)
        return sotto__errf(err, errcap, rc, "log-mel front end failed: %s",
                           sotto_strerror(rc));
    content_frames = (int)n_frames - 1;
    if (content_frames > N_FRAMES_WINDOW)
        content_frames = N_FRAMES_WINDOW;
    if (content_frames < 2)
        content_frames = 2;
    enc_frames = pad_frames < 0 ? N_FRAMES_WINDOW
                                : (content_frames + pad_frames + 1) & ~1;
    if (enc_frames > N_FRAMES_WINDOW)
        enc_frames = N_FRAMES_WINDOW;
    window = calloc((size_t)m->n_mels * (size_t)enc_frames, sizeof *window);
    prompt = malloc((size_t)m->n_text_ctx * sizeof *prompt);
    if (window == NULL || prompt == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
        goto fail;
    }
    for (int c = 0; c < m->n_mels; c++) {
        int have = (int)n_frames < content_frames ? (int)n_frames : content_frames;
        memcpy(window + (size_t)c * (size_t)enc_frames, mel + (size_t)c * n_frames,
               (size_t)have * sizeof *window);
    }
    memset(&io, 0, sizeof io);
    io.window = window;
    io.stride = enc_frames;
    io.enc_frames = enc_frames;
    io.segment_size = content_frames;
    io.prev = prev;
    io.n_prev = prev != NULL ? n_prev : 0;
    io.prefix = prefix;
    io.n_prefix = prefix != NULL && n_prefix > 0 ? n_prefix : 0;
    if (io.n_prefix > SOTTO__MAX_PREFIX)
        io.n_prefix = SOTTO__MAX_PREFIX;
    rc = process_window(st, p, &io, lang_token, prompt, rng, r, NULL, err,
                        errcap);
fail:
    free(mel);
    free(window);
    free(prompt);
    return rc;
}
