/*
 * output.c - writing a transcription as text, JSON, SRT or WebVTT.
 *
 * Uses only the public API (sotto.h) and cJSON for the JSON form.  Every
 * writer returns 0, or -1 when the stream reports an error (a closed pipe,
 * a full disk) so that main() can exit non-zero.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "client/client.h"

/* Prints s without leading and trailing spaces. */
static void put_stripped(FILE *f, const char *s)
{
    size_t n;
    while (*s == ' ')
        s++;
    n = strlen(s);
    while (n > 0 && s[n - 1] == ' ')
        n--;
    fwrite(s, 1, n, f);
}

static void put_time(FILE *f, double t, char sep)
{
    long long ms = llround(t * 1000.0);
    if (ms < 0)
        ms = 0;
    fprintf(f, "%02lld:%02lld:%02lld%c%03lld", ms / 3600000, ms / 60000 % 60,
            ms / 1000 % 60, sep, ms % 1000);
}

static double round2(double x)
{
    return round(x * 100.0) / 100.0;
}

static int write_json(FILE *f, const sotto_result *r)
{
    cJSON *root = cJSON_CreateObject(), *segs;
    char *s;
    int rc = -1;

    if (root == NULL)
        return -1;
    cJSON_AddNumberToObject(root, "duration", sotto_result_duration(r));
    cJSON_AddStringToObject(root, "text", sotto_result_text(r));
    segs = cJSON_AddArrayToObject(root, "segments");
    for (int i = 0; segs && i < sotto_result_n_segments(r); i++) {
        const sotto_segment *sg = sotto_result_segment(r, i);
        cJSON *o = cJSON_CreateObject(), *toks;
        if (o == NULL)
            goto fail;
        cJSON_AddItemToArray(segs, o);
        cJSON_AddNumberToObject(o, "id", i + 1);
        cJSON_AddNumberToObject(o, "start", round2(sg->start));
        cJSON_AddNumberToObject(o, "end", round2(sg->end));
        cJSON_AddStringToObject(o, "text", sg->text);
        toks = cJSON_CreateIntArray(sg->tokens, sg->n_tokens);
        if (toks == NULL)
            goto fail;
        cJSON_AddItemToObject(o, "tokens", toks);
        cJSON_AddNumberToObject(o, "avg_logprob", sg->avg_logprob);
        cJSON_AddNumberToObject(o, "no_speech_prob", sg->no_speech_prob);
        cJSON_AddNumberToObject(o, "compression_ratio", sg->compression_ratio);
        cJSON_AddNumberToObject(o, "temperature", sg->temperature);
        if (sg->words != NULL) {
            cJSON *words = cJSON_AddArrayToObject(o, "words");
            for (int j = 0; words && j < sg->n_words; j++) {
                cJSON *w = cJSON_CreateObject();
                if (w == NULL)
                    goto fail;
                cJSON_AddItemToArray(words, w);
                cJSON_AddNumberToObject(w, "start", round2(sg->words[j].start));
                cJSON_AddNumberToObject(w, "end", round2(sg->words[j].end));
                cJSON_AddStringToObject(w, "word", sg->words[j].text);
                cJSON_AddNumberToObject(w, "probability", sg->words[j].probability);
            }
        }
    }
    s = cJSON_PrintUnformatted(root);
    if (s != NULL) {
        fputs(s, f);
        fputc('\n', f);
        cJSON_free(s);
        rc = 0;
    }
fail:
    cJSON_Delete(root);
    return rc;
}

int sotto_cli_write(FILE *f, const sotto_result *r, enum sotto_cli_format fmt)
{
    int n = sotto_result_n_segments(r);

    switch (fmt) {
    case SOTTO_CLI_JSON:
        if (write_json(f, r) != 0)
            return -1;
        break;
    case SOTTO_CLI_TEXT:
        for (int i = 0; i < n; i++) {
            put_stripped(f, sotto_result_segment(r, i)->text);
            fputc('\n', f);
        }
        break;
    case SOTTO_CLI_SRT:
    case SOTTO_CLI_VTT:
        if (fmt == SOTTO_CLI_VTT)
            fputs("WEBVTT\n\n", f);
        for (int i = 0; i < n; i++) {
            const sotto_segment *sg = sotto_result_segment(r, i);
            char sep = fmt == SOTTO_CLI_SRT ? ',' : '.';
            if (fmt == SOTTO_CLI_SRT)
                fprintf(f, "%d\n", i + 1);
            put_time(f, sg->start, sep);
            fputs(" --> ", f);
            put_time(f, sg->end, sep);
            fputc('\n', f);
            put_stripped(f, sg->text);
            fputs("\n\n", f);
        }
        break;
    }
    if (fflush(f) != 0 || ferror(f))
        return -1;
    return 0;
}
