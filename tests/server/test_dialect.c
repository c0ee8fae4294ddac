/*
 * test_dialect.c - the parsers of the vosk, WhisperLive and OpenAI Realtime
 * client messages (src/server/dialect.c): what each accepts, what it
 * refuses and with which message, and the limits on what it copies.
 * The end-to-end behaviour of the dialects is in test_dialects.py.
 */
#include <stdio.h>
#include <string.h>

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

int main(void)
{
    test_vosk();
    test_whisperlive();
    test_realtime();
    return test_main_exit("test_dialect");
}
