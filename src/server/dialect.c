/*
 * dialect.c - parsers of the vosk, WhisperLive, OpenAI Realtime and
 * Wyoming client messages and of the OpenAI REST form fields (see
 * dialect.h).  JSON goes through cJSON and base64 through
 * OpenSSL; what is left here is checking each field's type and range and
 * copying it into a fixed-size struct under a named limit.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "server/dialect.h"

static int fail(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return -1;
}

static const cJSON *get(const cJSON *o, const char *key)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

/* A language code: lowercase ASCII letters, shorter than the limit;
 * null or "" mean the default.  0 or -1. */
static int copy_language(const cJSON *x, char out[SOTTO__DIALECT_MAX_LANGUAGE + 1],
                         const char *what, char *err, size_t cap)
{
    size_t n;

    out[0] = 0;
    if (x == NULL || cJSON_IsNull(x))
        return 0;
    if (!cJSON_IsString(x))
        return fail(err, cap, "%s must be a string or null", what);
    n = strlen(x->valuestring);
    if (n > SOTTO__DIALECT_MAX_LANGUAGE ||
        strspn(x->valuestring, "abcdefghijklmnopqrstuvwxyz") != n)
        return fail(err, cap, "%s must be a language code such as \"en\"", what);
    memcpy(out, x->valuestring, n + 1);
    return 0;
}

static int copy_prompt(const cJSON *x, char out[SOTTO__DIALECT_MAX_PROMPT + 1],
                       const char *what, char *err, size_t cap)
{
    size_t n;

    out[0] = 0;
    if (x == NULL || cJSON_IsNull(x))
        return 0;
    if (!cJSON_IsString(x))
        return fail(err, cap, "%s must be a string", what);
    if ((n = strlen(x->valuestring)) > SOTTO__DIALECT_MAX_PROMPT)
        return fail(err, cap, "%s is longer than %d bytes", what,
                    SOTTO__DIALECT_MAX_PROMPT);
    memcpy(out, x->valuestring, n + 1);
    return 0;
}

/* A sample rate: an integral number of Hz the gateway takes. */
static int get_rate(const cJSON *x, int *rate, const char *what, char *err, size_t cap)
{
    if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) || x->valuedouble < 8000 ||
        x->valuedouble > 192000 || x->valuedouble != floor(x->valuedouble))
        return fail(err, cap, "%s must be a whole number of Hz, 8000 .. 192000", what);
    *rate = (int)x->valuedouble;
    return 0;
}

/* ---- vosk ---------------------------------------------------------------- */

int sotto__vosk_parse(const char *text, size_t len, sotto__vosk_msg *m,
                      char *err, size_t errcap)
{
    cJSON *o = cJSON_ParseWithLength(text, len);
    const cJSON *c, *x;
    int rc = -1;

    memset(m, 0, sizeof *m);
    m->words = -1;
    if (!cJSON_IsObject(o)) {
        fail(err, errcap, "text messages must be JSON objects");
        goto done;
    }
    if ((c = get(o, "config")) != NULL) {
        if (!cJSON_IsObject(c)) {
            fail(err, errcap, "config must be an object");
            goto done;
        }
        m->kind = SOTTO__VOSK_CONFIG;
        if ((x = get(c, "sample_rate")) != NULL &&
            get_rate(x, &m->sample_rate, "config.sample_rate", err, errcap) != 0)
            goto done;
        if ((x = get(c, "words")) != NULL) {
            if (!cJSON_IsBool(x) && !cJSON_IsNumber(x)) {
                fail(err, errcap, "config.words must be true or false");
                goto done;
            }
            m->words = cJSON_IsTrue(x) || (cJSON_IsNumber(x) && x->valuedouble != 0);
        }
        m->ignored = get(c, "max_alternatives") != NULL ||
                     get(c, "phrase_list") != NULL || get(c, "model") != NULL;
        rc = 0;
    } else if ((x = get(o, "eof")) != NULL) {
        m->kind = SOTTO__VOSK_EOF;
        rc = 0;
    } else if ((x = get(o, "reset")) != NULL) {
        m->kind = SOTTO__VOSK_RESET;
        rc = 0;
    } else {
        fail(err, errcap, "expected {\"config\": ...}, {\"eof\": 1} or {\"reset\": 1}");
    }
done:
    cJSON_Delete(o);
    return rc;
}

/* ---- WhisperLive --------------------------------------------------------- */

#define WL_END "END_OF_AUDIO"

int sotto__wl_is_end(const void *data, size_t len)
{
    return len == sizeof WL_END - 1 && memcmp(data, WL_END, len) == 0;
}

int sotto__wl_parse_options(const char *text, size_t len, sotto__wl_options *opt,
                            char *err, size_t errcap)
{
    cJSON *o = cJSON_ParseWithLength(text, len);
    const cJSON *x;
    int rc = -1;
    size_t n;

    memset(opt, 0, sizeof *opt);
    opt->use_vad = 1;
    opt->format = SOTTO__WL_F32;
    opt->last_n = 10;
    if (!cJSON_IsObject(o)) {
        fail(err, errcap, "the first message must be a JSON object of options");
        goto done;
    }
    x = get(o, "uid");
    if (!cJSON_IsString(x) || (n = strlen(x->valuestring)) == 0 ||
        n > SOTTO__DIALECT_MAX_UID) {
        fail(err, errcap, "uid must be a string of 1 to %d bytes", SOTTO__DIALECT_MAX_UID);
        goto done;
    }
    memcpy(opt->uid, x->valuestring, n + 1);
    if (copy_language(get(o, "language"), opt->language, "language", err, errcap) != 0 ||
        copy_prompt(get(o, "initial_prompt"), opt->prompt, "initial_prompt", err,
                    errcap) != 0)
        goto done;
    if ((x = get(o, "task")) != NULL && !cJSON_IsNull(x)) {
        if (!cJSON_IsString(x) || (strcmp(x->valuestring, "transcribe") != 0 &&
                                   strcmp(x->valuestring, "translate") != 0)) {
            fail(err, errcap, "task must be \"transcribe\"");
            goto done;
        }
        if (strcmp(x->valuestring, "translate") == 0) {
            fail(err, errcap, "task \"translate\" is not supported; use \"transcribe\"");
            goto done;
        }
    }
    if ((x = get(o, "use_vad")) != NULL && !cJSON_IsNull(x)) {
        if (!cJSON_IsBool(x)) {
            fail(err, errcap, "use_vad must be true or false");
            goto done;
        }
        opt->use_vad = cJSON_IsTrue(x);
    }
    if ((x = get(o, "word_timestamps")) != NULL && !cJSON_IsNull(x)) {
        if (!cJSON_IsBool(x)) {
            fail(err, errcap, "word_timestamps must be true or false");
            goto done;
        }
        opt->word_timestamps = cJSON_IsTrue(x);
    }
    if ((x = get(o, "send_last_n_segments")) != NULL && !cJSON_IsNull(x)) {
        if (!cJSON_IsNumber(x) || x->valuedouble < 1 ||
            x->valuedouble > SOTTO__DIALECT_MAX_LAST_N) {
            fail(err, errcap, "send_last_n_segments must be 1 .. %d",
                 SOTTO__DIALECT_MAX_LAST_N);
            goto done;
        }
        opt->last_n = (int)x->valuedouble;
    }
    if ((x = get(o, "audio_format")) != NULL && !cJSON_IsNull(x)) {
        if (cJSON_IsString(x) && strcmp(x->valuestring, "float32") == 0)
            opt->format = SOTTO__WL_F32;
        else if (cJSON_IsString(x) && strcmp(x->valuestring, "int16") == 0)
            opt->format = SOTTO__WL_S16;
        else {
            fail(err, errcap, "audio_format must be \"float32\" or \"int16\"");
            goto done;
        }
    }
    rc = 0;
done:
    cJSON_Delete(o);
    return rc;
}

/* ---- OpenAI Realtime ----------------------------------------------------- */

/* Decodes base64 (whitespace allowed) into out.  Returns the byte count,
 * or -1 when it is not base64, -2 when it might not fit in cap (each 4
 * characters give at most 3 bytes). */
static long b64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    EVP_ENCODE_CTX *ctx;
    int a = 0, b = 0, rc;

    if (n > (size_t)1 << 30 || (n + 3) / 4 * 3 > cap)
        return -2;
    if ((ctx = EVP_ENCODE_CTX_new()) == NULL)
        return -1;
    EVP_DecodeInit(ctx);
    rc = EVP_DecodeUpdate(ctx, out, &a, (const unsigned char *)in, (int)n);
    if (rc >= 0 && EVP_DecodeFinal(ctx, out + a, &b) < 0)
        rc = -1;
    EVP_ENCODE_CTX_free(ctx);
    if (rc < 0)
        return -1;
    return (long)a + b;
}

/* Reads the session object of a session update into m. */
static int rt_session(const cJSON *s, sotto__rt_msg *m, char *err, size_t cap)
{
    const cJSON *in = get(get(s, "audio"), "input"), *x, *tr, *td;

    if (!cJSON_IsObject(s))
        return fail(err, cap, "session must be an object");
    /* The beta shape: input_audio_format "pcm16" (24 kHz). */
    if ((x = get(s, "input_audio_format")) != NULL) {
        if (!cJSON_IsString(x) || strcmp(x->valuestring, "pcm16") != 0)
            return fail(err, cap, "input_audio_format must be \"pcm16\" "
                        "(G.711 is not supported)");
        m->rate = 24000;
    }
    /* The GA shape: audio.input.format {"type": "audio/pcm", "rate": N}. */
    if ((x = get(in, "format")) != NULL) {
        const cJSON *t = get(x, "type"), *r = get(x, "rate");
        if (!cJSON_IsObject(x) || !cJSON_IsString(t) ||
            strcmp(t->valuestring, "audio/pcm") != 0)
            return fail(err, cap, "audio.input.format.type must be \"audio/pcm\" "
                        "(G.711 is not supported)");
        m->rate = 24000;
        if (r != NULL && get_rate(r, &m->rate, "audio.input.format.rate", err, cap) != 0)
            return -1;
    }
    tr = get(s, "input_audio_transcription");
    if (tr == NULL)
        tr = get(in, "transcription");
    if (tr != NULL && !cJSON_IsNull(tr)) {
        if (!cJSON_IsObject(tr))
            return fail(err, cap, "transcription settings must be an object");
        if ((x = get(tr, "language")) != NULL) {
            if (copy_language(x, m->language, "transcription.language", err, cap) != 0)
                return -1;
            m->language_set = 1;
        }
        if ((x = get(tr, "prompt")) != NULL) {
            if (copy_prompt(x, m->prompt, "transcription.prompt", err, cap) != 0)
                return -1;
            m->prompt_set = 1;
        }
    }
    td = get(s, "turn_detection");
    if (td == NULL)
        td = get(in, "turn_detection");
    if (td != NULL) {
        if (cJSON_IsNull(td)) {
            m->turn_detection = 0;
        } else {
            const cJSON *t = get(td, "type");
            if (!cJSON_IsString(t) || (strcmp(t->valuestring, "server_vad") != 0 &&
                                       strcmp(t->valuestring, "semantic_vad") != 0))
                return fail(err, cap, "turn_detection must be null or of type "
                            "\"server_vad\"");
            m->turn_detection = 1;
        }
    }
    return 0;
}

int sotto__rt_parse(const char *text, size_t len, sotto__rt_msg *m,
                    unsigned char *audio, size_t audio_cap,
                    const char **code, char *err, size_t errcap)
{
    cJSON *o = cJSON_ParseWithLength(text, len);
    const cJSON *t, *x;
    int rc = -1;

    memset(m, 0, sizeof *m);
    m->rate = -1;
    m->turn_detection = -1;
    *code = "invalid_value";
    if (!cJSON_IsObject(o)) {
        *code = "invalid_json";
        fail(err, errcap, "client events must be JSON objects");
        goto done;
    }
    if ((x = get(o, "event_id")) != NULL && cJSON_IsString(x) &&
        strlen(x->valuestring) <= SOTTO__RT_MAX_EVENT_ID)
        memcpy(m->event_id, x->valuestring, strlen(x->valuestring) + 1);
    t = get(o, "type");
    if (!cJSON_IsString(t)) {
        fail(err, errcap, "the event has no type");
        goto done;
    }
    if (strcmp(t->valuestring, "session.update") == 0 ||
        strcmp(t->valuestring, "transcription_session.update") == 0) {
        m->kind = SOTTO__RT_SESSION_UPDATE;
        m->legacy = t->valuestring[0] == 't';
        if (rt_session(get(o, "session"), m, err, errcap) != 0)
            goto done;
    } else if (strcmp(t->valuestring, "input_audio_buffer.append") == 0) {
        long n;
        m->kind = SOTTO__RT_APPEND;
        x = get(o, "audio");
        if (!cJSON_IsString(x)) {
            fail(err, errcap, "audio must be a base64 string");
            goto done;
        }
        n = b64_decode(x->valuestring, strlen(x->valuestring), audio, audio_cap);
        if (n == -2) {
            *code = "audio_too_large";
            fail(err, errcap, "audio is larger than %zu bytes", audio_cap);
            goto done;
        }
        if (n < 0) {
            fail(err, errcap, "audio is not valid base64");
            goto done;
        }
        m->audio_n = (size_t)n;
    } else if (strcmp(t->valuestring, "input_audio_buffer.commit") == 0) {
        m->kind = SOTTO__RT_COMMIT;
    } else if (strcmp(t->valuestring, "input_audio_buffer.clear") == 0) {
        m->kind = SOTTO__RT_CLEAR;
    } else {
        *code = "unknown_event";
        fail(err, errcap, "event type \"%.64s\" is not supported here", t->valuestring);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(o);
    return rc;
}

/* ---- OpenAI REST ------------------------------------------------------------- */

const char *const sotto__rest_field_names[SOTTO__REST_N_FIELDS] = {
    "model", "language", "prompt", "temperature", "response_format",
    "timestamp_granularities[]", "timestamp_granularities", "stream"
};

/* Whether the comma-separated list holds only granularities; sets words. */
static int rest_granularities(const char *v, int *words)
{
    const char *p = v;

    while (*p != 0) {
        size_t n = strcspn(p, ",");
        const char *q = p;
        while (n > 0 && *q == ' ')
            q++, n--;
        while (n > 0 && q[n - 1] == ' ')
            n--;
        if (n == 4 && memcmp(q, "word", 4) == 0)
            *words = 1;
        else if (!(n == 7 && memcmp(q, "segment", 7) == 0))
            return -1;
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
    }
    return 0;
}

int sotto__rest_parse(const char *const v[SOTTO__REST_N_FIELDS], sotto__rest_req *r,
                      const char **param, char *err, size_t errcap)
{
    static const char *const formats[] = { "json", "text", "srt", "vtt", "verbose_json" };
    const char *x;
    int granularities = 0;

    memset(r, 0, sizeof *r);
    r->format = SOTTO__REST_JSON;
    *param = NULL;
    if ((x = v[SOTTO__REST_FORMAT]) != NULL && x[0] != 0) {
        r->format = 0;
        for (int i = 0; i < 5; i++)
            if (strcmp(x, formats[i]) == 0)
                r->format = i + 1;
        if (r->format == 0) {
            *param = "response_format";
            return fail(err, errcap, "response_format must be json, text, srt, vtt or "
                        "verbose_json");
        }
    }
    for (int f = SOTTO__REST_GRANULARITIES; f <= SOTTO__REST_GRANULARITIES2; f++)
        if ((x = v[f]) != NULL && x[0] != 0) {
            granularities = 1;
            if (rest_granularities(x, &r->words) != 0) {
                *param = "timestamp_granularities[]";
                return fail(err, errcap, "timestamp_granularities[] takes word and segment");
            }
        }
    if (granularities && r->format != SOTTO__REST_VERBOSE_JSON) {
        *param = "timestamp_granularities[]";
        return fail(err, errcap, "timestamp_granularities[] needs response_format "
                    "verbose_json");
    }
    if ((x = v[SOTTO__REST_STREAM]) != NULL && x[0] != 0) {
        if (strcmp(x, "true") == 0)
            r->stream = 1;
        else if (strcmp(x, "false") != 0) {
            *param = "stream";
            return fail(err, errcap, "stream must be true or false");
        }
    }
    if ((x = v[SOTTO__REST_TEMPERATURE]) != NULL && x[0] != 0) {
        char *end;
        double t = strtod(x, &end);
        if (*end != 0 || !(t >= 0 && t <= 1)) {
            *param = "temperature";
            return fail(err, errcap, "temperature must be a number from 0 to 1");
        }
        r->temperature = (float)t;
    }
    if ((x = v[SOTTO__REST_LANGUAGE]) != NULL && x[0] != 0) {
        size_t n = strlen(x);
        if (n > SOTTO__DIALECT_MAX_LANGUAGE ||
            strspn(x, "abcdefghijklmnopqrstuvwxyz") != n) {
            *param = "language";
            return fail(err, errcap, "language must be a code such as \"en\" (ISO-639-1)");
        }
        memcpy(r->language, x, n + 1);
    }
    if ((x = v[SOTTO__REST_PROMPT]) != NULL) {
        size_t n = strlen(x);
        if (n > SOTTO__DIALECT_MAX_PROMPT) {
            *param = "prompt";
            return fail(err, errcap, "prompt is longer than %d bytes",
                        SOTTO__DIALECT_MAX_PROMPT);
        }
        memcpy(r->prompt, x, n + 1);
    }
    return 0;
}

/* ---- Wyoming ----------------------------------------------------------------- */

/* The protocol version sotto writes in its headers. */
#define WY_VERSION "1.5.3"

void sotto__wy_reader_init(sotto__wy_reader *r, size_t max_payload)
{
    memset(r, 0, sizeof *r);
    r->max_payload = max_payload;
}

int sotto__wy_reader_push(sotto__wy_reader *r, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    /* Drop the event last returned first, so the buffer holds at most one
     * event and one push. */
    if (r->used > 0) {
        memmove(r->buf, r->buf + r->used, r->n - r->used);
        r->n -= r->used;
        r->used = 0;
    }
    if (r->n + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        unsigned char *nb;
        while (cap < r->n + n)
            cap *= 2;
        if ((nb = realloc(r->buf, cap)) == NULL)
            return -1;
        r->buf = nb;
        r->cap = cap;
    }
    memcpy(r->buf + r->n, data, n);
    r->n += n;
    return 0;
}

void sotto__wy_event_clear(sotto__wy_event *ev)
{
    cJSON_Delete(ev->data);
    memset(ev, 0, sizeof *ev);
}

void sotto__wy_reader_free(sotto__wy_reader *r)
{
    free(r->buf);
    memset(r, 0, sizeof *r);
}

/* A length field: absent or null is 0; else a whole number up to max. */
static int wy_length(const cJSON *h, const char *key, size_t max, size_t *out,
                     char *err, size_t cap)
{
    const cJSON *x = get(h, key);

    *out = 0;
    if (x == NULL || cJSON_IsNull(x))
        return 0;
    if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble != floor(x->valuedouble))
        return fail(err, cap, "%s must be a whole number", key);
    if (x->valuedouble > (double)max)
        return fail(err, cap, "%s %.0f is over the limit of %zu bytes", key,
                    x->valuedouble, max);
    *out = (size_t)x->valuedouble;
    return 0;
}

int sotto__wy_next(sotto__wy_reader *r, sotto__wy_event *ev, char *err, size_t errcap)
{
    const unsigned char *p, *nl;
    size_t avail, line, data_n, payload_n;
    cJSON *h = NULL, *d = NULL;
    const cJSON *t, *x;
    int rc = -1;

    sotto__wy_event_clear(ev);
    if (r->used > 0) {
        memmove(r->buf, r->buf + r->used, r->n - r->used);
        r->n -= r->used;
        r->used = 0;
    }
    p = r->buf;
    avail = r->n;
    nl = avail > 0 ? memchr(p, '\n', avail < SOTTO__WY_MAX_HEADER ? avail
                                                                  : SOTTO__WY_MAX_HEADER) : NULL;
    if (nl == NULL) {
        if (avail >= SOTTO__WY_MAX_HEADER)
            return fail(err, errcap, "a header line longer than %d bytes",
                        SOTTO__WY_MAX_HEADER);
        return 0;
    }
    line = (size_t)(nl - p);
    if ((h = cJSON_ParseWithLength((const char *)p, line)) == NULL || !cJSON_IsObject(h)) {
        fail(err, errcap, "a header that is not a JSON object");
        goto done;
    }
    t = get(h, "type");
    if (!cJSON_IsString(t) || t->valuestring[0] == 0 ||
        strlen(t->valuestring) > SOTTO__WY_MAX_TYPE) {
        fail(err, errcap, "a header without a type of 1 to %d bytes", SOTTO__WY_MAX_TYPE);
        goto done;
    }
    if (wy_length(h, "data_length", SOTTO__WY_MAX_DATA, &data_n, err, errcap) != 0 ||
        wy_length(h, "payload_length", r->max_payload, &payload_n, err, errcap) != 0)
        goto done;
    x = get(h, "data");
    if (x != NULL && !cJSON_IsNull(x) && !cJSON_IsObject(x)) {
        fail(err, errcap, "data must be an object");
        goto done;
    }
    if (avail - line - 1 < data_n + payload_n) {
        rc = 0;                 /* the rest has not come yet */
        goto done;
    }
    /* The data: the header's, updated by the data block's. */
    d = x != NULL && cJSON_IsObject(x) ? cJSON_DetachItemFromObjectCaseSensitive(h, "data")
                                       : cJSON_CreateObject();
    if (d == NULL)
        goto done;
    if (data_n > 0) {
        cJSON *blk = cJSON_ParseWithLength((const char *)nl + 1, data_n), *it;
        if (blk == NULL || !cJSON_IsObject(blk)) {
            cJSON_Delete(blk);
            fail(err, errcap, "a data block that is not a JSON object");
            goto done;
        }
        while ((it = blk->child) != NULL) {
            cJSON_DetachItemViaPointer(blk, it);
            if (it->string == NULL) {
                cJSON_Delete(it);
                continue;
            }
            cJSON_DeleteItemFromObjectCaseSensitive(d, it->string);
            cJSON_AddItemToObject(d, it->string, it);
            /* cJSON_AddItemToObject copies the key; drop the item's own. */
        }
        cJSON_Delete(blk);
    }
    snprintf(ev->type, sizeof ev->type, "%s", t->valuestring);
    ev->data = d;
    d = NULL;
    ev->payload = payload_n > 0 ? nl + 1 + data_n : NULL;
    ev->payload_n = payload_n;
    r->used = line + 1 + data_n + payload_n;
    rc = 1;
done:
    cJSON_Delete(d);
    cJSON_Delete(h);
    return rc;
}

unsigned char *sotto__wy_render(const char *type, const cJSON *data, const void *payload,
                                size_t payload_n, size_t *n)
{
    cJSON *h = cJSON_CreateObject();
    char *hdr = NULL, *dj = NULL;
    unsigned char *out = NULL;
    size_t hl, dl = 0;

    if (h == NULL)
        goto done;
    cJSON_AddStringToObject(h, "type", type);
    cJSON_AddStringToObject(h, "version", WY_VERSION);
    if (data != NULL && cJSON_GetArraySize(data) > 0) {
        if ((dj = cJSON_PrintUnformatted(data)) == NULL)
            goto done;
        dl = strlen(dj);
        cJSON_AddNumberToObject(h, "data_length", (double)dl);
    }
    if (payload_n > 0)
        cJSON_AddNumberToObject(h, "payload_length", (double)payload_n);
    if ((hdr = cJSON_PrintUnformatted(h)) == NULL)
        goto done;
    hl = strlen(hdr);
    if ((out = malloc(hl + 1 + dl + payload_n)) == NULL)
        goto done;
    memcpy(out, hdr, hl);
    out[hl] = '\n';
    if (dl > 0)
        memcpy(out + hl + 1, dj, dl);
    if (payload_n > 0)
        memcpy(out + hl + 1 + dl, payload, payload_n);
    *n = hl + 1 + dl + payload_n;
done:
    free(hdr);
    free(dj);
    cJSON_Delete(h);
    return out;
}

/* ---- native (/v1/stream) --------------------------------------------------- */

static int native_config(const cJSON *o, sotto__native_msg *m, char *err, size_t cap)
{
    const cJSON *x;

    if ((x = get(o, "format")) != NULL) {
        if (!cJSON_IsString(x))
            return fail(err, cap, "format must be a string");
        if (strcmp(x->valuestring, "pcm_s16le") == 0)
            m->format = SOTTO__NATIVE_S16;
        else if (strcmp(x->valuestring, "pcm_f32le") == 0)
            m->format = SOTTO__NATIVE_F32;
        else if (strcmp(x->valuestring, "opus") == 0)
            m->format = SOTTO__NATIVE_OPUS;
        else
            return fail(err, cap, "format must be pcm_s16le, pcm_f32le or opus");
    }
    if ((x = get(o, "sample_rate")) != NULL) {
        if (!cJSON_IsNumber(x) || !(x->valuedouble >= 8000 && x->valuedouble <= 192000) ||
            x->valuedouble != floor(x->valuedouble))
            return fail(err, cap, "sample_rate must be an integer, 8000 .. 192000");
        m->sample_rate = (int)x->valuedouble;
    }
    if ((x = get(o, "language")) != NULL) {
        if (copy_language(x, m->language, "language", err, cap) != 0)
            return -1;
        m->has_language = 1;
    }
    if ((x = get(o, "partials")) != NULL) {
        if (!cJSON_IsBool(x))
            return fail(err, cap, "partials must be true or false");
        m->partials = cJSON_IsTrue(x);
    }
    if ((x = get(o, "vad")) != NULL) {
        if (!cJSON_IsBool(x))
            return fail(err, cap, "vad must be true or false");
        m->vad = cJSON_IsTrue(x);
    }
    return 0;
}

int sotto__native_parse(const char *text, size_t len, sotto__native_msg *m,
                        const char **code, char *err, size_t errcap)
{
    cJSON *o = cJSON_ParseWithLength(text, len);
    const cJSON *type;
    int rc = -1;

    memset(m, 0, sizeof *m);
    m->partials = m->vad = m->has_language = -1;
    if (o == NULL || !cJSON_IsObject(o)) {
        *code = "bad_json";
        fail(err, errcap, "text messages must be JSON objects");
        goto done;
    }
    type = get(o, "type");
    if (type != NULL && !cJSON_IsString(type)) {
        *code = "bad_message";
        fail(err, errcap, "type must be a string");
        goto done;
    }
    if (type == NULL || strcmp(type->valuestring, "config") == 0) {
        m->kind = SOTTO__NATIVE_CONFIG;
        *code = "bad_config";
        rc = native_config(o, m, err, errcap);
    } else if (strcmp(type->valuestring, "finish") == 0) {
        m->kind = SOTTO__NATIVE_FINISH;
        rc = 0;
    } else {
        *code = "unknown_type";
        fail(err, errcap, "unknown message type");
    }
done:
    cJSON_Delete(o);
    return rc;
}

/* ---- what the gateway reads from the request itself ------------------------ */

static int key_is(const char *cand, size_t n, const char *key)
{
    unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
    unsigned int la = 0, lb = 0;

    if (!EVP_Digest(cand, n, a, &la, EVP_sha256(), NULL) ||
        !EVP_Digest(key, strlen(key), b, &lb, EVP_sha256(), NULL))
        return 0;
    return la == lb && CRYPTO_memcmp(a, b, la) == 0;
}

int sotto__auth_has_key(const char *authz, const char *protocols, const char *key)
{
    if (authz != NULL && strncasecmp(authz, "Bearer ", 7) == 0) {
        const char *k = authz + 7 + strspn(authz + 7, " ");
        if (key_is(k, strcspn(k, " "), key))
            return 1;
    }
    for (const char *t = protocols; t != NULL && *t != 0;) {
        size_t tl;
        t += strspn(t, " ,");
        tl = strcspn(t, " ,");
        if (tl > 7 && strncmp(t, "bearer.", 7) == 0 && key_is(t + 7, tl - 7, key))
            return 1;
        t += tl;
    }
    return 0;
}

int sotto__rt_intent_ok(const char *arg)
{
    return arg == NULL || strcmp(arg, "intent=transcription") == 0 ||
           strcmp(arg, "transcription") == 0;
}
