/*
 * stream_proto.c - reading what the server sends to `sotto stream`: the
 * WebSocket protocol's JSON events and the raw TCP protocol's lines.
 *
 * The server is outside data like any other: a hostile or broken one may
 * send any bytes.  So every time is checked to be a finite number of
 * seconds in [0, SOTTO_CLI_MAX_TIME_S] (anything else reads as 0, and
 * confirms nothing), every text is copied with its control characters
 * replaced (a server must not be able to drive the user's terminal with
 * escape sequences), and nothing here keeps state between calls.  This
 * file has no network code, so fuzz/fuzz_client.c drives it directly.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "client/stream_client.h"

void sotto_cli_printable(const char *src, char *dst, size_t cap)
{
    size_t i = 0;
    if (cap == 0)
        return;
    for (; *src && i + 1 < cap; src++) {
        unsigned char c = (unsigned char)*src;
        dst[i++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    /* Do not leave half of a UTF-8 sequence at a cut. */
    if (*src) {
        size_t k = i;
        while (k > 0 && ((unsigned char)dst[k - 1] & 0xc0) == 0x80)
            k--;
        if (k > 0 && ((unsigned char)dst[k - 1] & 0xc0) == 0xc0)
            i = k - 1;
    }
    dst[i] = '\0';
}

/* A time field: finite seconds in range, else 0. */
static double time_field(const cJSON *obj, const char *key)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) || x->valuedouble < 0.0 ||
        x->valuedouble > SOTTO_CLI_MAX_TIME_S)
        return 0.0;
    return x->valuedouble;
}

int sotto_cli_event_parse(const char *msg, size_t len, sotto_cli_event *ev,
                          char *text, size_t cap)
{
    static const struct { const char *name; enum sotto_cli_event_kind kind; } kinds[] = {
        { "ready", SOTTO_CLI_EV_READY }, { "partial", SOTTO_CLI_EV_PARTIAL },
        { "final", SOTTO_CLI_EV_FINAL }, { "utterance_end", SOTTO_CLI_EV_UTTERANCE_END },
        { "warning", SOTTO_CLI_EV_WARNING }, { "error", SOTTO_CLI_EV_ERROR },
    };
    const cJSON *type, *body;
    size_t i;

    memset(ev, 0, sizeof *ev);
    if (cap > 0)
        text[0] = '\0';
    ev->json = cJSON_ParseWithLength(msg, len);
    if (ev->json == NULL || !cJSON_IsObject(ev->json)) {
        cJSON_Delete(ev->json);
        ev->json = NULL;
        return -1;
    }
    ev->kind = SOTTO_CLI_EV_OTHER;
    type = cJSON_GetObjectItemCaseSensitive(ev->json, "type");
    if (cJSON_IsString(type))
        for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
            if (strcmp(type->valuestring, kinds[i].name) == 0)
                ev->kind = kinds[i].kind;
    ev->start = time_field(ev->json, "start");
    ev->end = time_field(ev->json, "end");
    /* Finals and partials carry "text"; warnings and errors "message". */
    body = cJSON_GetObjectItemCaseSensitive(ev->json, "text");
    if (!cJSON_IsString(body))
        body = cJSON_GetObjectItemCaseSensitive(ev->json, "message");
    if (cJSON_IsString(body))
        sotto_cli_printable(body->valuestring, text, cap);
    return 0;
}

void sotto_cli_event_clear(sotto_cli_event *ev)
{
    cJSON_Delete(ev->json);
    ev->json = NULL;
}

/* Shifts a time field by off seconds, to the millisecond. */
static void shift_time(cJSON *obj, const char *key, double off)
{
    cJSON *x = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsNumber(x) && isfinite(x->valuedouble))
        cJSON_SetNumberValue(x, round((x->valuedouble + off) * 1000.0) / 1000.0);
}

char *sotto_cli_event_json(sotto_cli_event *ev, double off)
{
    cJSON *w, *words;
    if (ev->json == NULL)
        return NULL;
    if (off > 0) {
        shift_time(ev->json, "start", off);
        shift_time(ev->json, "end", off);
        shift_time(ev->json, "audio_time", off);
        words = cJSON_GetObjectItemCaseSensitive(ev->json, "words");
        if (cJSON_IsArray(words)) {
            cJSON_ArrayForEach(w, words) {
                shift_time(w, "start", off);
                shift_time(w, "end", off);
            }
        }
    }
    return cJSON_PrintUnformatted(ev->json);
}

/* Reads a decimal count of milliseconds at *p (then skips one space);
 * -1 when there is none or it is out of range. */
static int read_ms(const char **p, double *out)
{
    char *end;
    long long v;
    if (**p < '0' || **p > '9')
        return -1;
    errno = 0;
    v = strtoll(*p, &end, 10);
    if (errno || v < 0 || (double)v > SOTTO_CLI_MAX_TIME_S * 1000.0)
        return -1;
    *out = (double)v / 1000.0;
    *p = end;
    if (**p != ' ')
        return -1;
    (*p)++;
    return 0;
}

int sotto_cli_line_parse(const char *line, double *start, double *end, char *text,
                         size_t cap)
{
    const char *p = line;
    if (read_ms(&p, start) != 0 || read_ms(&p, end) != 0)
        return -1;
    sotto_cli_printable(p, text, cap);
    return 0;
}
