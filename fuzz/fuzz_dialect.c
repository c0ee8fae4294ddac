/*
 * fuzz_dialect.c - libFuzzer target for the parsers of the other servers'
 * client messages (src/server/dialect.c): vosk-server's text messages,
 * WhisperLive's options and end marker, OpenAI Realtime's client events
 * with their base64 audio, Wyoming's framing on raw TCP, and the form
 * fields of the OpenAI REST endpoint (one per line; an empty line is an
 * absent field).
 *
 * The first byte of the input picks the parser (modulo 5), the
 * rest is the message, as the gateway hands it over: a whole WebSocket
 * text message of any bytes, or for Wyoming the bytes of a TCP stream,
 * pushed in pieces whose sizes come from the input itself.  Each parser must answer with 0 and a filled
 * struct, or -1 with an error message; never crash, leak, or read or write
 * out of bounds.  The target checks the contracts the gateway relies on:
 * copied strings are NUL-terminated within their limits, rates are in
 * range, the decoded audio fits its buffer, and an error always says why.
 *
 * Seeds: fuzz/seeds/dialect (one file per parser and case; the first byte
 * is the selector).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "server/dialect.h"

/* The Realtime audio buffer: small, so that "too large" is reachable. */
#define AUDIO_CAP 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    const char *text;
    size_t len;

    if (size < 1)
        return 0;
    text = (const char *)data + 1;
    len = size - 1;
    err[0] = 0;
    switch (data[0] % 5) {
    case 0: {
        sotto__vosk_msg m;
        if (sotto__vosk_parse(text, len, &m, err, sizeof err) == 0) {
            if (m.kind < SOTTO__VOSK_CONFIG || m.kind > SOTTO__VOSK_RESET)
                abort();
            if (m.sample_rate != 0 && (m.sample_rate < 8000 || m.sample_rate > 192000))
                abort();
        } else if (err[0] == 0) {
            abort();
        }
        break;
    }
    case 1: {
        sotto__wl_options o;
        (void)sotto__wl_is_end(text, len);
        if (sotto__wl_parse_options(text, len, &o, err, sizeof err) == 0) {
            if (o.uid[0] == 0 || strlen(o.uid) > SOTTO__DIALECT_MAX_UID ||
                strlen(o.language) > SOTTO__DIALECT_MAX_LANGUAGE ||
                strlen(o.prompt) > SOTTO__DIALECT_MAX_PROMPT ||
                o.last_n < 1 || o.last_n > SOTTO__DIALECT_MAX_LAST_N)
                abort();
        } else if (err[0] == 0) {
            abort();
        }
        break;
    }
    case 4: {
        const char *v[SOTTO__REST_N_FIELDS] = { 0 };
        char *copy = malloc(len + 1), *p;
        sotto__rest_req r;
        const char *param;
        int i = 0;
        if (copy == NULL)
            return 0;
        memcpy(copy, text, len);
        copy[len] = 0;
        for (p = copy; i < SOTTO__REST_N_FIELDS; i++) {
            char *nl = strchr(p, '\n');
            if (nl != NULL)
                *nl = 0;
            v[i] = p[0] != 0 ? p : NULL;
            if (nl == NULL)
                break;
            p = nl + 1;
        }
        if (sotto__rest_parse(v, &r, &param, err, sizeof err) == 0) {
            if (r.format < SOTTO__REST_JSON || r.format > SOTTO__REST_VERBOSE_JSON ||
                !(r.temperature >= 0 && r.temperature <= 1) ||
                strlen(r.language) > SOTTO__DIALECT_MAX_LANGUAGE ||
                strlen(r.prompt) > SOTTO__DIALECT_MAX_PROMPT)
                abort();
        } else if (err[0] == 0 || param == NULL) {
            abort();
        }
        free(copy);
        break;
    }
    case 3: {
        /* Wyoming: a small payload limit, so that "too large" is reachable;
         * pieces of 1 to 64 bytes, by the bytes themselves. */
        sotto__wy_reader r;
        sotto__wy_event ev = { 0 };
        size_t at = 0;
        sotto__wy_reader_init(&r, AUDIO_CAP);
        while (at < len) {
            size_t k = 1 + ((const unsigned char *)text)[at] % 64;
            int rc;
            if (k > len - at)
                k = len - at;
            if (sotto__wy_reader_push(&r, text + at, k) != 0)
                break;
            at += k;
            while ((rc = sotto__wy_next(&r, &ev, err, sizeof err)) == 1) {
                if (ev.type[0] == 0 || ev.data == NULL || ev.payload_n > AUDIO_CAP ||
                    (ev.payload_n > 0 && ev.payload == NULL))
                    abort();
                if (ev.payload_n > 0)
                    (void)(volatile unsigned char)ev.payload[ev.payload_n - 1];
            }
            if (rc < 0) {
                if (err[0] == 0)
                    abort();
                break;
            }
            /* The buffer holds at most one event and one push. */
            if (r.n > SOTTO__WY_MAX_HEADER + SOTTO__WY_MAX_DATA + AUDIO_CAP + 64)
                abort();
        }
        sotto__wy_event_clear(&ev);
        sotto__wy_reader_free(&r);
        {
            /* The writer's frames read back as what was written. */
            size_t n = 0;
            unsigned char *b = sotto__wy_render("transcript", NULL, text, len < 64 ? len : 64,
                                                &n);
            free(b);
        }
        break;
    }
    default: {
        sotto__rt_msg m;
        unsigned char *audio = malloc(AUDIO_CAP);
        const char *code = NULL;
        if (audio == NULL)
            return 0;
        if (sotto__rt_parse(text, len, &m, audio, AUDIO_CAP, &code, err, sizeof err) == 0) {
            if (m.audio_n > AUDIO_CAP || strlen(m.event_id) > SOTTO__RT_MAX_EVENT_ID ||
                strlen(m.language) > SOTTO__DIALECT_MAX_LANGUAGE ||
                strlen(m.prompt) > SOTTO__DIALECT_MAX_PROMPT ||
                (m.rate != -1 && (m.rate < 8000 || m.rate > 192000)))
                abort();
        } else if (err[0] == 0 || code == NULL) {
            abort();
        }
        free(audio);
        break;
    }
    }
    return 0;
}
