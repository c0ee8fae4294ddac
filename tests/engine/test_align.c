/*
 * test_align.c - word-level timestamps against faster-whisper.
 *
 * Transcribes recordings of tests/golden/words.json (made with
 * faster-whisper 1.2.1, greedy, word_timestamps=True, on the tiny model)
 * through the public API (jfk.wav and two recordings with punctuation by
 * default, all of them with SOTTO_ALIGN_ALL=1) and checks, for every
 * recording whose segment texts match the golden ones (jfk.wav must):
 *   - the same words, in the same segments, with the same text (leading
 *     space and merged punctuation included);
 *   - start and end within 0.1 s of faster-whisper's for at least 90% of
 *     the words, and probabilities within 0.1 for at least 90%;
 *   - segment start/end equal to their first/last word where faster-whisper
 *     has it so, and within 0.1 s of faster-whisper's otherwise;
 *   - words ordered and non-negative.
 * Plus: a second of near-silence transcribes without error and any words
 * it yields are well-formed.  The golden file was made with the English
 * tiny model (d_model 384, 4 text layers, 51864 tokens); with another
 * model only that last check runs.
 *
 * Run from the repository root (the golden file is read relative to it).
 * Environment: SOTTO_MODEL (default tiny.en, e.g. /tmp/tiny) and
 * SOTTO_SHARED (audio in $SOTTO_SHARED/audio).
 * SOTTO_ALIGN_VERBOSE=1 prints every word next to faster-whisper's.
 */
#include <cJSON.h>

#include "sotto.h"
#include "test.h"

#define GOLDEN "tests/golden/words.json"
#define TIME_TOL 0.1
#define PROB_TOL 0.1

static sotto_transcribe_params greedy_params(void)
{
    sotto_transcribe_params p = sotto_transcribe_default_params();
    p.beam_size = 1;
    p.best_of = 1;
    p.temperatures[0] = 0.0f;
    p.n_temperatures = 1;
    p.language = "en";
    p.word_timestamps = 1;
    return p;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* What sotto_transcribe's on_window callback reported. */
typedef struct win_log {
    char text[16384];
    int calls, monotone;
    double done;
} win_log;

static void on_window(void *user, const sotto_segment *segs, int n, double done)
{
    win_log *w = user;

    w->calls++;
    if (done < w->done)
        w->monotone = 0;
    w->done = done;
    for (int i = 0; i < n; i++)
        strncat(w->text, segs[i].text, sizeof w->text - strlen(w->text) - 1);
}

/* Compares one recording; returns 1 if it was compared (texts matched),
 * 0 if skipped. */
static int check_file(const sotto_model *m, const char *name,
                      const cJSON *gold, int must)
{
    const cJSON *gsegs = cJSON_GetObjectItemCaseSensitive(gold, "segments");
    sotto_transcribe_params p = greedy_params();
    sotto_result *res = NULL;
    float *pcm = NULL;
    size_t n = 0;
    char path[4096], err[512];
    int rc, n_seg, words = 0, t_ok = 0, p_ok = 0, same_text = 1;
    static win_log wl;

    snprintf(path, sizeof path, "%s/audio/%s", test_shared_dir(), name);
    rc = sotto_audio_decode_file(path, &pcm, &n, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "%s: cannot read: %s\n", name, err);
        CHECK(!must);
        return 0;
    }
    memset(&wl, 0, sizeof wl);
    wl.monotone = 1;
    p.on_window = on_window;
    p.on_window_user = &wl;
    rc = sotto_transcribe(m, pcm, n, &p, &res, err, sizeof err);
    sotto_pcm_free(pcm);
    CHECK_INT_EQ(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", name, err);
        return 0;
    }
    /* The windows' segments, as they came, are the result's. */
    CHECK(wl.calls >= 1);
    CHECK(wl.monotone);
    CHECK(fabs(wl.done - sotto_result_duration(res)) < 0.05);
    if (strlen(sotto_result_text(res)) < sizeof wl.text - 1)
        CHECK_STR_EQ(wl.text, sotto_result_text(res));

    n_seg = sotto_result_n_segments(res);
    if (n_seg != cJSON_GetArraySize(gsegs))
        same_text = 0;
    for (int i = 0; same_text && i < n_seg; i++) {
        const char *gt = str(cJSON_GetArrayItem(gsegs, i), "text");
        if (gt == NULL || strcmp(gt, sotto_result_segment(res, i)->text) != 0)
            same_text = 0;
    }
    if (!same_text) {
        fprintf(stderr, "%s: segment texts differ from faster-whisper's; "
                "words not compared\n", name);
        CHECK(!must);
        sotto_result_destroy(res);
        return 0;
    }

    for (int i = 0; i < n_seg; i++) {
        const sotto_segment *s = sotto_result_segment(res, i);
        const cJSON *gs = cJSON_GetArrayItem(gsegs, i);
        const cJSON *gw = cJSON_GetObjectItemCaseSensitive(gs, "words");
        int gn = cJSON_GetArraySize(gw);

        CHECK_INT_EQ(s->n_words, gn);
        CHECK(s->words != NULL || s->n_words == 0);
        if (s->n_words > 0 && gn > 0) {
            const cJSON *g0 = cJSON_GetArrayItem(gw, 0);
            const cJSON *gl = cJSON_GetArrayItem(gw, gn - 1);
            /* Where faster-whisper's segment bounds are its word bounds,
             * ours must be ours. */
            if (num(gs, "start") == num(g0, "start"))
                CHECK(s->start == s->words[0].start);
            if (num(gs, "end") == num(gl, "end"))
                CHECK(s->end == s->words[s->n_words - 1].end);
            CHECK(fabs(s->start - num(gs, "start")) <= TIME_TOL + 1e-9);
            CHECK(fabs(s->end - num(gs, "end")) <= TIME_TOL + 1e-9);
        }
        for (int k = 0; k < s->n_words && k < gn; k++) {
            const sotto_word *w = &s->words[k];
            const cJSON *g = cJSON_GetArrayItem(gw, k);
            double ds = fabs(w->start - num(g, "start"));
            double de = fabs(w->end - num(g, "end"));
            double dp = fabs(w->probability - num(g, "probability"));

            CHECK_STR_EQ(w->text, str(g, "word"));
            CHECK(w->start >= 0.0 && w->start <= w->end);
            if (k > 0)
                CHECK(w->start >= s->words[k - 1].start);
            words++;
            t_ok += ds <= TIME_TOL + 1e-9 && de <= TIME_TOL + 1e-9;
            p_ok += dp <= PROB_TOL;
            if (getenv("SOTTO_ALIGN_VERBOSE"))
                printf("  %-16s %6.2f %6.2f (%6.2f %6.2f)  p %.3f (%.3f)\n",
                       w->text, w->start, w->end, num(g, "start"),
                       num(g, "end"), w->probability, num(g, "probability"));
        }
    }
    printf("%s: %d words, %d with start/end within %.2f s, %d with "
           "probability within %.2f\n", name, words, t_ok, TIME_TOL, p_ok,
           PROB_TOL);
    CHECK(words > 0);
    CHECK(t_ok * 10 >= words * 9);
    CHECK(p_ok * 10 >= words * 9);
    sotto_result_destroy(res);
    return 1;
}

/* Recordings checked by default besides jfk.wav: merged punctuation
 * (" dinner,", " -fattened", " -disposed.") and sentence ends. */
static int in_default_set(const char *name)
{
    static const char *const set[] = {
        "librispeech-test-clean-1089-134686-0000.wav",
        "librivox-sense_and_sensibility_01_austen_64kb-0890.wav",
    };
    for (size_t i = 0; i < sizeof set / sizeof *set; i++)
        if (strcmp(name, set[i]) == 0)
            return 1;
    return 0;
}

/* One second of silence: no words, no failure. */
static void check_silence(const sotto_model *m)
{
    sotto_transcribe_params p = greedy_params();
    sotto_result *res = NULL;
    float *pcm = calloc(SOTTO_SAMPLE_RATE, sizeof *pcm);
    char err[512];
    int rc;

    CHECK(pcm != NULL);
    if (pcm == NULL)
        return;
    pcm[100] = 1e-4f;
    rc = sotto_transcribe(m, pcm, SOTTO_SAMPLE_RATE, &p, &res, err, sizeof err);
    CHECK_INT_EQ(rc, 0);
    for (int i = 0; rc == 0 && i < sotto_result_n_segments(res); i++) {
        const sotto_segment *s = sotto_result_segment(res, i);
        for (int k = 0; k < s->n_words; k++)
            CHECK(s->words[k].text != NULL && s->words[k].end >= s->words[k].start);
    }
    sotto_result_destroy(res);
    free(pcm);
}

int main(void)
{
    sotto_model *m = NULL;
    char err[512];
    char *json;
    size_t len = 0;
    cJSON *root;
    int rc, compared = 0;
    const cJSON *item;
    sotto_model_info info;

    json = test_read_file(GOLDEN, &len);
    CHECK(json != NULL);
    if (json == NULL) {
        fprintf(stderr, "cannot read %s (run from the repository root)\n",
                GOLDEN);
        return test_main_exit("test_align");
    }
    root = cJSON_Parse(json);
    free(json);
    CHECK(root != NULL);

    rc = sotto_model_create(test_model_dir(), NULL, &m, err, sizeof err);
    CHECK_INT_EQ(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "model %s: %s\n", test_model_dir(), err);
        cJSON_Delete(root);
        return test_main_exit("test_align");
    }

    sotto_model_get_info(m, &info);
    if (info.n_vocab != 51864 || info.d_model != 384 || info.n_text_layers != 4) {
        printf("test_align: %s is not the model of %s; golden words "
               "not compared\n", test_model_dir(), GOLDEN);
        cJSON_Delete(root);
        root = NULL;
    }
    cJSON_ArrayForEach(item, root) {
        const char *name = item->string;
        int is_jfk = strcmp(name, "jfk.wav") == 0;
        if (strcmp(name, "meta") == 0)
            continue;
        if (!is_jfk && !getenv("SOTTO_ALIGN_ALL") && !in_default_set(name))
            continue;
        compared += check_file(m, name, item, is_jfk);
    }
    printf("test_align: %d recordings compared\n", compared);
    check_silence(m);

    sotto_model_destroy(m);
    cJSON_Delete(root);
    return test_main_exit("test_align");
}
