/*
 * test_dialect.c - the parsers of the native, vosk, WhisperLive, OpenAI
 * Realtime and Wyoming client messages, and of the API key and Realtime
 * intent in a request (src/server/dialect.c): what each accepts,
 * what it refuses and with which message, and the limits on what it
 * copies; Wyoming's framing fed byte by byte, and its writer read back.
 * The end-to-end behaviour of the dialects is in test_dialects.py.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "server/dialect.h"
#include "test.h"

#define S(lit) lit, sizeof(lit) - 1

static void test_vosk(void)
{
    sotto__vosk_msg m;
    char err[200];

    /* vosk-server matches this spelling as a string; any JSON works here. */
    CHECK_INT_EQ(sotto__vosk_parse(S("{\"eof\" : 1}"), &m, err, sizeof err), 0);
    CHECK_INT_EQ(m.kind, SOTTO__VOSK_EOF);
    CHECK_INT_EQ(sotto__vosk_parse(S("  {\n\"eof\":1 }  "), &m, err, sizeof err), 0);
    CHECK_INT_EQ(m.kind, SOTTO__VOSK_EOF);
    CHECK_INT_EQ(sotto__vosk_parse(S("{\"reset\" : 1}"), &m, err, sizeof err), 0);
    CHECK_INT_EQ(m.kind, SOTTO__VOSK_RESET);
    CHECK_INT_EQ(sotto__vosk_parse(S("{ \"config\" : { \"sample_rate\" : 8000.0 } }"), &m,
                                   err, sizeof err), 0);
    CHECK_INT_EQ(m.kind, SOTTO__VOSK_CONFIG);
    CHECK_INT_EQ(m.sample_rate, 8000);
    CHECK_INT_EQ(m.words, -1);
    CHECK_INT_EQ(m.ignored, 0);
    CHECK_INT_EQ(sotto__vosk_parse(S("{\"config\": {\"words\": false, \"phrase_list\": []}}"),
                                   &m, err, sizeof err), 0);
    CHECK_INT_EQ(m.sample_rate, 0);
    CHECK_INT_EQ(m.words, 0);
    CHECK_INT_EQ(m.ignored, 1);

    CHECK_INT_EQ(sotto__vosk_parse(S("{\"config\": {\"sample_rate\": 44100.5}}"), &m, err,
                                   sizeof err), -1);
    CHECK(strstr(err, "sample_rate") != NULL);
    CHECK_INT_EQ(sotto__vosk_parse(S("{\"config\": {\"sample_rate\": 1000}}"), &m, err,
                                   sizeof err), -1);
    CHECK_INT_EQ(sotto__vosk_parse(S("{\"config\": 5}"), &m, err, sizeof err), -1);
    CHECK_INT_EQ(sotto__vosk_parse(S("{\"hello\": 1}"), &m, err, sizeof err), -1);
    CHECK(strstr(err, "eof") != NULL);
    CHECK_INT_EQ(sotto__vosk_parse(S("eof"), &m, err, sizeof err), -1);
    CHECK_INT_EQ(sotto__vosk_parse(S("[1]"), &m, err, sizeof err), -1);
    CHECK_INT_EQ(sotto__vosk_parse("", 0, &m, err, sizeof err), -1);
}

static void test_whisperlive(void)
{
    sotto__wl_options o;
    char err[200], big[400];

    CHECK(sotto__wl_is_end(S("END_OF_AUDIO")));
    CHECK(!sotto__wl_is_end(S("END_OF_AUDIO\n")));
    CHECK(!sotto__wl_is_end(S("END_OF_AUDI")));

    CHECK_INT_EQ(sotto__wl_parse_options(S("{\"uid\": \"abc\", \"language\": null, "
                                           "\"task\": \"transcribe\", \"model\": \"small\", "
                                           "\"use_vad\": false, \"hotwords\": null}"),
                                         &o, err, sizeof err), 0);
    CHECK_STR_EQ(o.uid, "abc");
    CHECK_STR_EQ(o.language, "");
    CHECK_INT_EQ(o.use_vad, 0);
    CHECK_INT_EQ(o.format, SOTTO__WL_F32);
    CHECK_INT_EQ(o.last_n, 10);
    CHECK_INT_EQ(sotto__wl_parse_options(S("{\"uid\": \"u\", \"language\": \"en\", "
                                           "\"audio_format\": \"int16\", "
                                           "\"send_last_n_segments\": 3, "
                                           "\"word_timestamps\": true, "
                                           "\"initial_prompt\": \"Kennedy\"}"),
                                         &o, err, sizeof err), 0);
    CHECK_STR_EQ(o.language, "en");
    CHECK_INT_EQ(o.format, SOTTO__WL_S16);
    CHECK_INT_EQ(o.last_n, 3);
    CHECK_INT_EQ(o.word_timestamps, 1);
    CHECK_STR_EQ(o.prompt, "Kennedy");

    CHECK_INT_EQ(sotto__wl_parse_options(S("{\"language\": \"en\"}"), &o, err, sizeof err), -1);
    CHECK(strstr(err, "uid") != NULL);
    CHECK_INT_EQ(sotto__wl_parse_options(S("{\"uid\": \"\"}"), &o, err, sizeof err), -1);
    CHECK_INT_EQ(sotto__wl_parse_options(S("{\"uid\": \"u\", \"task\": \"translate\"}"), &o,
                                         err, sizeof err), -1);
    CHECK(strstr(err, "translate") != NULL);
    CHECK_INT_EQ(sotto__wl_parse_options(S("{\"uid\": \"u\", \"audio_format\": \"uint8\"}"),
                                         &o, err, sizeof err), -1);
    CHECK(strstr(err, "audio_format") != NULL);
    CHECK_INT_EQ(sotto__wl_parse_options(S("{\"uid\": \"u\", \"language\": \"EN\"}"), &o,
                                         err, sizeof err), -1);
    CHECK_INT_EQ(sotto__wl_parse_options(S("{\"uid\": \"u\", \"use_vad\": 1}"), &o, err,
                                         sizeof err), -1);
    CHECK_INT_EQ(sotto__wl_parse_options(S("{\"uid\": \"u\", \"send_last_n_segments\": 0}"),
                                         &o, err, sizeof err), -1);
    /* A uid over the limit is refused, not cut. */
    memset(big, 'x', sizeof big);
    {
        char msg[600];
        int n = snprintf(msg, sizeof msg, "{\"uid\": \"%.*s\"}", SOTTO__DIALECT_MAX_UID + 1, big);
        CHECK_INT_EQ(sotto__wl_parse_options(msg, (size_t)n, &o, err, sizeof err), -1);
        n = snprintf(msg, sizeof msg, "{\"uid\": \"%.*s\"}", SOTTO__DIALECT_MAX_UID, big);
        CHECK_INT_EQ(sotto__wl_parse_options(msg, (size_t)n, &o, err, sizeof err), 0);
        CHECK_INT_EQ(strlen(o.uid), SOTTO__DIALECT_MAX_UID);
    }
    CHECK_INT_EQ(sotto__wl_parse_options(S("not json"), &o, err, sizeof err), -1);
}

static void test_realtime(void)
{
    sotto__rt_msg m;
    unsigned char audio[16];
    const char *code;
    char err[200];

    CHECK_INT_EQ(sotto__rt_parse(S("{\"type\": \"input_audio_buffer.append\", "
                                   "\"event_id\": \"e7\", \"audio\": \"AAECAwQF\"}"),
                                 &m, audio, sizeof audio, &code, err, sizeof err), 0);
    CHECK_INT_EQ(m.kind, SOTTO__RT_APPEND);
    CHECK_STR_EQ(m.event_id, "e7");
    CHECK_INT_EQ(m.audio_n, 6);
    CHECK(memcmp(audio, "\0\1\2\3\4\5", 6) == 0);
    /* Padding. */
    CHECK_INT_EQ(sotto__rt_parse(S("{\"type\": \"input_audio_buffer.append\", "
                                   "\"audio\": \"AAE=\"}"),
                                 &m, audio, sizeof audio, &code, err, sizeof err), 0);
    CHECK_INT_EQ(m.audio_n, 2);
    CHECK_INT_EQ(sotto__rt_parse(S("{\"type\": \"input_audio_buffer.append\", "
                                   "\"audio\": \"not base64!\"}"),
                                 &m, audio, sizeof audio, &code, err, sizeof err), -1);
    CHECK_STR_EQ(code, "invalid_value");
    /* 24 characters could be 18 bytes: more than the 16-byte buffer. */
    CHECK_INT_EQ(sotto__rt_parse(S("{\"type\": \"input_audio_buffer.append\", "
                                   "\"audio\": \"AAAAAAAAAAAAAAAAAAAAAAAA\"}"),
                                 &m, audio, sizeof audio, &code, err, sizeof err), -1);
    CHECK_STR_EQ(code, "audio_too_large");

    CHECK_INT_EQ(sotto__rt_parse(S("{\"type\": \"session.update\", \"session\": {"
                                   "\"type\": \"transcription\", \"audio\": {\"input\": {"
                                   "\"format\": {\"type\": \"audio/pcm\", \"rate\": 24000},"
                                   "\"transcription\": {\"language\": \"en\", "
                                   "\"prompt\": \"JFK\"}, \"turn_detection\": null}}}}"),
                                 &m, audio, sizeof audio, &code, err, sizeof err), 0);
    CHECK_INT_EQ(m.kind, SOTTO__RT_SESSION_UPDATE);
    CHECK_INT_EQ(m.legacy, 0);
    CHECK_INT_EQ(m.rate, 24000);
    CHECK_INT_EQ(m.turn_detection, 0);
    CHECK_STR_EQ(m.language, "en");
    CHECK_STR_EQ(m.prompt, "JFK");
    CHECK_INT_EQ(sotto__rt_parse(S("{\"type\": \"transcription_session.update\", "
                                   "\"session\": {\"input_audio_format\": \"pcm16\", "
                                   "\"turn_detection\": {\"type\": \"server_vad\"}}}"),
                                 &m, audio, sizeof audio, &code, err, sizeof err), 0);
    CHECK_INT_EQ(m.legacy, 1);
    CHECK_INT_EQ(m.rate, 24000);
    CHECK_INT_EQ(m.turn_detection, 1);
    CHECK_INT_EQ(m.language_set, 0);
    /* An update that says nothing changes nothing. */
    CHECK_INT_EQ(sotto__rt_parse(S("{\"type\": \"session.update\", \"session\": {}}"),
                                 &m, audio, sizeof audio, &code, err, sizeof err), 0);
    CHECK_INT_EQ(m.rate, -1);
    CHECK_INT_EQ(m.turn_detection, -1);
    CHECK_INT_EQ(sotto__rt_parse(S("{\"type\": \"transcription_session.update\", "
                                   "\"session\": {\"input_audio_format\": \"g711_ulaw\"}}"),
                                 &m, audio, sizeof audio, &code, err, sizeof err), -1);
    CHECK(strstr(err, "G.711") != NULL);
    CHECK_INT_EQ(sotto__rt_parse(S("{\"type\": \"session.update\", \"session\": {\"audio\": "
                                   "{\"input\": {\"turn_detection\": {\"type\": \"x\"}}}}}"),
                                 &m, audio, sizeof audio, &code, err, sizeof err), -1);

    CHECK_INT_EQ(sotto__rt_parse(S("{\"type\": \"input_audio_buffer.commit\"}"), &m, audio,
                                 sizeof audio, &code, err, sizeof err), 0);
    CHECK_INT_EQ(m.kind, SOTTO__RT_COMMIT);
    CHECK_INT_EQ(sotto__rt_parse(S("{\"type\": \"input_audio_buffer.clear\"}"), &m, audio,
                                 sizeof audio, &code, err, sizeof err), 0);
    CHECK_INT_EQ(m.kind, SOTTO__RT_CLEAR);
    CHECK_INT_EQ(sotto__rt_parse(S("{\"type\": \"response.create\", \"event_id\": \"r\"}"),
                                 &m, audio, sizeof audio, &code, err, sizeof err), -1);
    CHECK_STR_EQ(code, "unknown_event");
    CHECK_STR_EQ(m.event_id, "r");
    CHECK_INT_EQ(sotto__rt_parse(S("{\"event_id\": \"r\"}"), &m, audio, sizeof audio, &code,
                                 err, sizeof err), -1);
    CHECK_INT_EQ(sotto__rt_parse(S("][\""), &m, audio, sizeof audio, &code, err, sizeof err),
                 -1);
    CHECK_STR_EQ(code, "invalid_json");
}

static void test_wyoming(void)
{
    static const char two[] =
        "{\"type\": \"audio-chunk\", \"data\": {\"rate\": 8000}, \"data_length\": 30, "
        "\"payload_length\": 4}\n"
        "{\"rate\": 16000, \"channels\": 1}"
        "\x01\x02\x03\x04"
        "{\"type\": \"audio-stop\"}\n";
    sotto__wy_reader r;
    sotto__wy_event ev = { 0 };
    char err[200];
    unsigned char *b;
    size_t n;

    /* Byte by byte: nothing until an event is whole; the data block
     * overrides the header's data; the payload follows. */
    sotto__wy_reader_init(&r, 1024);
    {
        int got = 0;
        for (size_t i = 0; i < sizeof two - 1; i++) {
            int rc;
            CHECK_INT_EQ(sotto__wy_reader_push(&r, two + i, 1), 0);
            while ((rc = sotto__wy_next(&r, &ev, err, sizeof err)) == 1) {
                if (got == 0) {
                    CHECK_STR_EQ(ev.type, "audio-chunk");
                    CHECK_INT_EQ(cJSON_GetObjectItem(ev.data, "rate")->valueint, 16000);
                    CHECK_INT_EQ(cJSON_GetObjectItem(ev.data, "channels")->valueint, 1);
                    CHECK_INT_EQ(ev.payload_n, 4);
                    CHECK(ev.payload != NULL && memcmp(ev.payload, "\1\2\3\4", 4) == 0);
                } else {
                    CHECK_STR_EQ(ev.type, "audio-stop");
                    CHECK_INT_EQ(ev.payload_n, 0);
                    CHECK(cJSON_IsObject(ev.data));
                }
                got++;
            }
            CHECK_INT_EQ(rc, 0);
        }
        CHECK_INT_EQ(got, 2);
    }
    sotto__wy_event_clear(&ev);
    sotto__wy_reader_free(&r);

#define WY_BAD(text, word)                                                   \
    do {                                                                     \
        sotto__wy_reader_init(&r, 1024);                                     \
        CHECK_INT_EQ(sotto__wy_reader_push(&r, text, strlen(text)), 0);      \
        err[0] = 0;                                                          \
        CHECK_INT_EQ(sotto__wy_next(&r, &ev, err, sizeof err), -1);         \
        CHECK(strstr(err, word) != NULL);                                    \
        sotto__wy_event_clear(&ev);                                          \
        sotto__wy_reader_free(&r);                                           \
    } while (0)
    WY_BAD("not json\n", "JSON");
    WY_BAD("{\"data\": {}}\n", "type");
    WY_BAD("{\"type\": \"x\", \"payload_length\": 1025}\n", "payload_length");
    WY_BAD("{\"type\": \"x\", \"payload_length\": -1}\n", "payload_length");
    WY_BAD("{\"type\": \"x\", \"data_length\": 65537}\n", "data_length");
    WY_BAD("{\"type\": \"x\", \"data\": [1]}\n", "data");
    WY_BAD("{\"type\": \"x\", \"data_length\": 3}\n[1]", "data block");
    /* No newline within the header limit. */
    {
        static char big[SOTTO__WY_MAX_HEADER + 10];
        memset(big, ' ', sizeof big - 1);
        big[0] = '{';
        WY_BAD(big, "header");
    }

    /* The writer's frame reads back. */
    {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "text", "Ask not");
        b = sotto__wy_render("transcript", d, "\x07", 1, &n);
        cJSON_Delete(d);
        CHECK(b != NULL);
        sotto__wy_reader_init(&r, 16);
        CHECK_INT_EQ(sotto__wy_reader_push(&r, b, n), 0);
        CHECK_INT_EQ(sotto__wy_next(&r, &ev, err, sizeof err), 1);
        CHECK_STR_EQ(ev.type, "transcript");
        CHECK_STR_EQ(cJSON_GetObjectItem(ev.data, "text")->valuestring, "Ask not");
        CHECK_INT_EQ(ev.payload_n, 1);
        CHECK_INT_EQ(sotto__wy_next(&r, &ev, err, sizeof err), 0);
        sotto__wy_event_clear(&ev);
        sotto__wy_reader_free(&r);
        free(b);
    }
}

static void test_rest(void)
{
    const char *v[SOTTO__REST_N_FIELDS] = { 0 }, *param;
    sotto__rest_req r;
    char err[200];

    /* Nothing given: json, no words, no stream, the default ladder. */
    CHECK_INT_EQ(sotto__rest_parse(v, &r, &param, err, sizeof err), 0);
    CHECK_INT_EQ(r.format, SOTTO__REST_JSON);
    CHECK_INT_EQ(r.words, 0);
    CHECK_INT_EQ(r.stream, 0);
    CHECK(r.temperature == 0);

    v[SOTTO__REST_FORMAT] = "verbose_json";
    v[SOTTO__REST_GRANULARITIES] = "segment";
    v[SOTTO__REST_GRANULARITIES2] = "word, segment";
    v[SOTTO__REST_STREAM] = "true";
    v[SOTTO__REST_TEMPERATURE] = "0.4";
    v[SOTTO__REST_LANGUAGE] = "en";
    v[SOTTO__REST_PROMPT] = "Kennedy";
    v[SOTTO__REST_MODEL] = "whisper-1";
    CHECK_INT_EQ(sotto__rest_parse(v, &r, &param, err, sizeof err), 0);
    CHECK_INT_EQ(r.format, SOTTO__REST_VERBOSE_JSON);
    CHECK_INT_EQ(r.words, 1);
    CHECK_INT_EQ(r.stream, 1);
    CHECK(fabsf(r.temperature - 0.4f) < 1e-6f);
    CHECK_STR_EQ(r.language, "en");
    CHECK_STR_EQ(r.prompt, "Kennedy");

#define REST_BAD(field, value, name)                                         \
    do {                                                                     \
        const char *save = v[field];                                         \
        v[field] = value;                                                    \
        param = NULL;                                                        \
        CHECK_INT_EQ(sotto__rest_parse(v, &r, &param, err, sizeof err), -1); \
        CHECK(param != NULL && strcmp(param, name) == 0);                    \
        v[field] = save;                                                     \
    } while (0)
    REST_BAD(SOTTO__REST_FORMAT, "xml", "response_format");
    REST_BAD(SOTTO__REST_FORMAT, "json", "timestamp_granularities[]");
    REST_BAD(SOTTO__REST_GRANULARITIES, "sentence", "timestamp_granularities[]");
    REST_BAD(SOTTO__REST_STREAM, "yes", "stream");
    REST_BAD(SOTTO__REST_TEMPERATURE, "1.5", "temperature");
    REST_BAD(SOTTO__REST_TEMPERATURE, "-0.1", "temperature");
    REST_BAD(SOTTO__REST_TEMPERATURE, "0.2x", "temperature");
    REST_BAD(SOTTO__REST_TEMPERATURE, "nan", "temperature");
    REST_BAD(SOTTO__REST_LANGUAGE, "English", "language");
    {
        static char big[SOTTO__DIALECT_MAX_PROMPT + 2];
        memset(big, 'a', sizeof big - 1);
        REST_BAD(SOTTO__REST_PROMPT, big, "prompt");
    }
}

static void test_native(void)
{
    sotto__native_msg m;
    const char *code = NULL;
    char err[200];

#define NATIVE_BAD(lit, want_code, want_text)                                 \
    do {                                                                      \
        code = NULL;                                                          \
        err[0] = 0;                                                           \
        CHECK_INT_EQ(sotto__native_parse(S(lit), &m, &code, err, sizeof err), -1); \
        CHECK(code != NULL && strcmp(code, want_code) == 0);                  \
        CHECK(strstr(err, want_text) != NULL);                                \
    } while (0)

    CHECK_INT_EQ(sotto__native_parse(S("{\"type\": \"finish\"}"), &m, &code, err,
                                     sizeof err), 0);
    CHECK_INT_EQ(m.kind, SOTTO__NATIVE_FINISH);
    /* A config without "type", every field absent: nothing changes. */
    CHECK_INT_EQ(sotto__native_parse(S("{}"), &m, &code, err, sizeof err), 0);
    CHECK_INT_EQ(m.kind, SOTTO__NATIVE_CONFIG);
    CHECK_INT_EQ(m.format, 0);
    CHECK_INT_EQ(m.sample_rate, 0);
    CHECK_INT_EQ(m.partials, -1);
    CHECK_INT_EQ(m.vad, -1);
    CHECK_INT_EQ(m.has_language, -1);
    CHECK_INT_EQ(sotto__native_parse(S("{\"type\": \"config\", \"format\": \"pcm_f32le\", "
                                       "\"sample_rate\": 48000, \"language\": \"yue\", "
                                       "\"partials\": false, \"vad\": true}"),
                                     &m, &code, err, sizeof err), 0);
    CHECK_INT_EQ(m.format, SOTTO__NATIVE_F32);
    CHECK_INT_EQ(m.sample_rate, 48000);
    CHECK_STR_EQ(m.language, "yue");
    CHECK_INT_EQ(m.partials, 0);
    CHECK_INT_EQ(m.vad, 1);
    /* null and "" both mean the server's default language. */
    CHECK_INT_EQ(sotto__native_parse(S("{\"language\": null, \"format\": \"opus\"}"), &m,
                                     &code, err, sizeof err), 0);
    CHECK_INT_EQ(m.has_language, 1);
    CHECK_STR_EQ(m.language, "");
    CHECK_INT_EQ(m.format, SOTTO__NATIVE_OPUS);
    CHECK_INT_EQ(sotto__native_parse(S("{\"sample_rate\": 8000.0}"), &m, &code, err,
                                     sizeof err), 0);
    CHECK_INT_EQ(m.sample_rate, 8000);

    NATIVE_BAD("{not json", "bad_json", "JSON objects");
    NATIVE_BAD("[1, 2]", "bad_json", "JSON objects");
    NATIVE_BAD("", "bad_json", "JSON objects");
    NATIVE_BAD("{\"type\": 5}", "bad_message", "type");
    NATIVE_BAD("{\"type\": \"dance\"}", "unknown_type", "unknown");
    NATIVE_BAD("{\"format\": \"mp3\"}", "bad_config", "format");
    NATIVE_BAD("{\"format\": 1}", "bad_config", "format");
    NATIVE_BAD("{\"sample_rate\": 7999}", "bad_config", "sample_rate");
    NATIVE_BAD("{\"sample_rate\": 192001}", "bad_config", "sample_rate");
    NATIVE_BAD("{\"sample_rate\": 16000.5}", "bad_config", "sample_rate");
    NATIVE_BAD("{\"sample_rate\": \"16000\"}", "bad_config", "sample_rate");
    NATIVE_BAD("{\"language\": \"EN\"}", "bad_config", "language");
    NATIVE_BAD("{\"language\": \"abcdefghijklmnop\"}", "bad_config", "language");
    NATIVE_BAD("{\"partials\": 1}", "bad_config", "partials");
    NATIVE_BAD("{\"vad\": \"no\"}", "bad_config", "vad");
    /* One bad field refuses the whole config (the good one comes first). */
    NATIVE_BAD("{\"sample_rate\": 8000, \"vad\": 0}", "bad_config", "vad");
#undef NATIVE_BAD
}

static void test_request(void)
{
    const char *key = "sk-test-123";

    CHECK_INT_EQ(sotto__auth_has_key("Bearer sk-test-123", NULL, key), 1);
    CHECK_INT_EQ(sotto__auth_has_key("bearer   sk-test-123  ", NULL, key), 1);
    CHECK_INT_EQ(sotto__auth_has_key("Bearer sk-test-12", NULL, key), 0);
    CHECK_INT_EQ(sotto__auth_has_key("Bearer sk-test-1234", NULL, key), 0);
    CHECK_INT_EQ(sotto__auth_has_key("Basic sk-test-123", NULL, key), 0);
    CHECK_INT_EQ(sotto__auth_has_key("Bearer ", NULL, key), 0);
    CHECK_INT_EQ(sotto__auth_has_key("sk-test-123", NULL, key), 0);
    CHECK_INT_EQ(sotto__auth_has_key(NULL, NULL, key), 0);
    CHECK_INT_EQ(sotto__auth_has_key("", "", key), 0);
    CHECK_INT_EQ(sotto__auth_has_key(NULL, "sotto, bearer.sk-test-123", key), 1);
    CHECK_INT_EQ(sotto__auth_has_key(NULL, "bearer.sk-test-123,sotto", key), 1);
    CHECK_INT_EQ(sotto__auth_has_key("Bearer wrong", "sotto,bearer.x, bearer.sk-test-123",
                                     key), 1);
    CHECK_INT_EQ(sotto__auth_has_key(NULL, "sotto, bearer.", key), 0);
    CHECK_INT_EQ(sotto__auth_has_key(NULL, "sotto, Bearer.sk-test-123", key), 0);
    CHECK_INT_EQ(sotto__auth_has_key(NULL, "sotto, bearer.sk-test-1234", key), 0);
    CHECK_INT_EQ(sotto__auth_has_key(NULL, "sk-test-123", key), 0);

    CHECK_INT_EQ(sotto__rt_intent_ok(NULL), 1);
    CHECK_INT_EQ(sotto__rt_intent_ok("intent=transcription"), 1);
    CHECK_INT_EQ(sotto__rt_intent_ok("transcription"), 1);
    CHECK_INT_EQ(sotto__rt_intent_ok("intent=conversation"), 0);
    CHECK_INT_EQ(sotto__rt_intent_ok(""), 0);
}

/* Every named limit on a copied field: at the limit it is taken whole,
 * one byte over it is refused (docs/limits.md). */
static void test_field_limits(void)
{
    static char msg[4 * SOTTO__DIALECT_MAX_PROMPT], text[2 * SOTTO__DIALECT_MAX_PROMPT];
    sotto__wl_options o;
    sotto__rt_msg m;
    unsigned char audio[4];
    const char *code;
    char err[200];
    int n;

    /* WhisperLive: initial_prompt and send_last_n_segments. */
    memset(text, 'a', SOTTO__DIALECT_MAX_PROMPT);
    text[SOTTO__DIALECT_MAX_PROMPT] = 0;
    n = snprintf(msg, sizeof msg, "{\"uid\": \"u\", \"initial_prompt\": \"%s\"}", text);
    CHECK_INT_EQ(sotto__wl_parse_options(msg, (size_t)n, &o, err, sizeof err), 0);
    CHECK_INT_EQ((int)strlen(o.prompt), SOTTO__DIALECT_MAX_PROMPT);
    strcat(text, "a");
    n = snprintf(msg, sizeof msg, "{\"uid\": \"u\", \"initial_prompt\": \"%s\"}", text);
    CHECK_INT_EQ(sotto__wl_parse_options(msg, (size_t)n, &o, err, sizeof err), -1);
    CHECK(strstr(err, "initial_prompt") != NULL);
    n = snprintf(msg, sizeof msg, "{\"uid\": \"u\", \"send_last_n_segments\": %d}",
                 SOTTO__DIALECT_MAX_LAST_N);
    CHECK_INT_EQ(sotto__wl_parse_options(msg, (size_t)n, &o, err, sizeof err), 0);
    CHECK_INT_EQ(o.last_n, SOTTO__DIALECT_MAX_LAST_N);
    n = snprintf(msg, sizeof msg, "{\"uid\": \"u\", \"send_last_n_segments\": %d}",
                 SOTTO__DIALECT_MAX_LAST_N + 1);
    CHECK_INT_EQ(sotto__wl_parse_options(msg, (size_t)n, &o, err, sizeof err), -1);
    CHECK(strstr(err, "send_last_n_segments") != NULL);

    /* Realtime: transcription.prompt. */
    text[SOTTO__DIALECT_MAX_PROMPT] = 0;
    n = snprintf(msg, sizeof msg, "{\"type\": \"transcription_session.update\", \"session\": "
                 "{\"input_audio_transcription\": {\"prompt\": \"%s\"}}}", text);
    CHECK_INT_EQ(sotto__rt_parse(msg, (size_t)n, &m, audio, sizeof audio, &code, err,
                                 sizeof err), 0);
    CHECK_INT_EQ((int)strlen(m.prompt), SOTTO__DIALECT_MAX_PROMPT);
    strcat(text, "a");
    n = snprintf(msg, sizeof msg, "{\"type\": \"transcription_session.update\", \"session\": "
                 "{\"input_audio_transcription\": {\"prompt\": \"%s\"}}}", text);
    CHECK_INT_EQ(sotto__rt_parse(msg, (size_t)n, &m, audio, sizeof audio, &code, err,
                                 sizeof err), -1);
    CHECK(strstr(err, "prompt") != NULL);
    CHECK_STR_EQ(code, "invalid_value");

    /* Realtime: an event_id is echoed up to its limit, and not at all
     * beyond it (it is not the client's any more once cut). */
    memset(text, 'e', SOTTO__RT_MAX_EVENT_ID);
    text[SOTTO__RT_MAX_EVENT_ID] = 0;
    n = snprintf(msg, sizeof msg, "{\"type\": \"input_audio_buffer.clear\", "
                 "\"event_id\": \"%s\"}", text);
    CHECK_INT_EQ(sotto__rt_parse(msg, (size_t)n, &m, audio, sizeof audio, &code, err,
                                 sizeof err), 0);
    CHECK_STR_EQ(m.event_id, text);
    strcat(text, "e");
    n = snprintf(msg, sizeof msg, "{\"type\": \"input_audio_buffer.clear\", "
                 "\"event_id\": \"%s\"}", text);
    CHECK_INT_EQ(sotto__rt_parse(msg, (size_t)n, &m, audio, sizeof audio, &code, err,
                                 sizeof err), 0);
    CHECK_STR_EQ(m.event_id, "");
    /* The decoded audio's capacity. */
    CHECK_INT_EQ(sotto__rt_parse(S("{\"type\": \"input_audio_buffer.append\", "
                                   "\"audio\": \"AAECAwQ=\"}"),
                                 &m, audio, sizeof audio, &code, err, sizeof err), -1);
    CHECK_STR_EQ(code, "audio_too_large");

    /* Wyoming: the event type's length. */
    {
        sotto__wy_reader r;
        sotto__wy_event ev = { 0 };
        memset(text, 't', SOTTO__WY_MAX_TYPE);
        text[SOTTO__WY_MAX_TYPE] = 0;
        n = snprintf(msg, sizeof msg, "{\"type\": \"%s\"}\n", text);
        sotto__wy_reader_init(&r, 1024);
        CHECK_INT_EQ(sotto__wy_reader_push(&r, msg, (size_t)n), 0);
        CHECK_INT_EQ(sotto__wy_next(&r, &ev, err, sizeof err), 1);
        CHECK_STR_EQ(ev.type, text);
        sotto__wy_event_clear(&ev);
        sotto__wy_reader_free(&r);
        strcat(text, "t");
        n = snprintf(msg, sizeof msg, "{\"type\": \"%s\"}\n", text);
        sotto__wy_reader_init(&r, 1024);
        CHECK_INT_EQ(sotto__wy_reader_push(&r, msg, (size_t)n), 0);
        CHECK_INT_EQ(sotto__wy_next(&r, &ev, err, sizeof err), -1);
        CHECK(strstr(err, "type") != NULL);
        sotto__wy_event_clear(&ev);
        sotto__wy_reader_free(&r);
    }
}

int main(void)
{
    test_field_limits();
    test_native();
    test_request();
    test_rest();
    test_vosk();
    test_whisperlive();
    test_realtime();
    test_wyoming();
    return test_main_exit("test_dialect");
}
