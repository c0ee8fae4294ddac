/*
 * dialect.h - parsers of the client messages of the other servers'
 * protocols that `sotto serve` speaks (internal).
 *
 * Each dialect (docs/protocol.md) maps a peer server's wire protocol onto
 * the gateway's one stream model.  This header holds the parts that read
 * outside data: pure functions from a message's bytes to a small struct,
 * with no socket, no libwebsockets and no gateway state, so that each is
 * a libFuzzer target (fuzz/fuzz_dialect.c) and unit-tested on its own.
 * The gateway side of each dialect (what it sends, its state per stream)
 * is in gateway_dialect.c.
 *
 *   vosk         vosk-server's WebSocket protocol: {"config": {...}},
 *                binary s16le audio, {"eof": 1}, {"reset": 1};
 *   whisperlive  WhisperLive's: a JSON options object first, binary
 *                float32 (or int16) audio, "END_OF_AUDIO";
 *   realtime     OpenAI's Realtime API in transcription mode: JSON events
 *                with base64 audio;
 *   native       sotto's own /v1/stream: {"type": "config", ...} and
 *                {"type": "finish"} (docs/protocol.md);
 *   wyoming      Home Assistant's Wyoming protocol on raw TCP: a JSON
 *                header line, optional JSON data, optional binary
 *                payload, per event (an incremental reader, since TCP
 *                has no messages).
 *
 * Also here: what the gateway reads from a request's headers and query
 * string itself (the API key, the Realtime intent); libwebsockets parses
 * the HTTP around them.
 *
 * Every string copied out has a named limit; a longer one is an error,
 * never truncated silently.
 */
#ifndef SOTTO_SERVER_DIALECT_H
#define SOTTO_SERVER_DIALECT_H

#include <stddef.h>

struct cJSON;

/* Longest WhisperLive uid echoed back in every reply. */
#define SOTTO__DIALECT_MAX_UID 128
/* Longest language code taken from a client ("en", "yue", ...). */
#define SOTTO__DIALECT_MAX_LANGUAGE 15
/* Longest prompt taken from a client (Whisper's prompt is at most 224
 * tokens; this many bytes cover it). */
#define SOTTO__DIALECT_MAX_PROMPT 1024
/* Most WhisperLive segments repeated in each reply. */
#define SOTTO__DIALECT_MAX_LAST_N 100

/* ---- vosk-server --------------------------------------------------------- */

enum sotto__vosk_kind {
    SOTTO__VOSK_CONFIG = 1,   /* {"config": {...}} */
    SOTTO__VOSK_EOF = 2,      /* {"eof": 1} */
    SOTTO__VOSK_RESET = 3     /* {"reset": 1} */
};

typedef struct sotto__vosk_msg {
    int kind;                 /* enum sotto__vosk_kind */
    int sample_rate;          /* CONFIG: Hz, 0 when not given */
    int words;                /* CONFIG: 1/0, -1 when not given */
    int ignored;              /* CONFIG: keys sotto does not use were
                               * given (max_alternatives, phrase_list,
                               * model) */
} sotto__vosk_msg;

/* Parses one vosk text message, in any JSON spelling (vosk-server itself
 * matches '{"eof" : 1}' as an exact string).  Returns 0, or -1 with a
 * message in err for anything else. */
int sotto__vosk_parse(const char *text, size_t len, sotto__vosk_msg *m,
                      char *err, size_t errcap);

/* ---- WhisperLive --------------------------------------------------------- */

enum sotto__wl_format { SOTTO__WL_F32 = 1, SOTTO__WL_S16 = 2 };

typedef struct sotto__wl_options {
    char uid[SOTTO__DIALECT_MAX_UID + 1];
    char language[SOTTO__DIALECT_MAX_LANGUAGE + 1];  /* "" = default */
    char prompt[SOTTO__DIALECT_MAX_PROMPT + 1];      /* initial_prompt */
    int use_vad;              /* 1 unless "use_vad": false */
    int format;               /* enum sotto__wl_format; float32 default */
    int last_n;               /* send_last_n_segments; 10 */
    int word_timestamps;      /* 0 */
} sotto__wl_options;

/* Whether a message is WhisperLive's end of audio (sent as text or, by
 * its own client, as a binary frame). */
int sotto__wl_is_end(const void *data, size_t len);

/* Parses the options message that opens a WhisperLive session.  Returns
 * 0, or -1 with a message in err: not a JSON object, no uid, a field of
 * the wrong type, task "translate" or an audio_format other than float32
 * and int16 (which sotto does not offer). */
int sotto__wl_parse_options(const char *text, size_t len, sotto__wl_options *o,
                            char *err, size_t errcap);

/* ---- OpenAI Realtime (transcription) -------------------------------------- */

enum sotto__rt_kind {
    SOTTO__RT_SESSION_UPDATE = 1,   /* session.update or
                                     * transcription_session.update */
    SOTTO__RT_APPEND = 2,           /* input_audio_buffer.append */
    SOTTO__RT_COMMIT = 3,           /* input_audio_buffer.commit */
    SOTTO__RT_CLEAR = 4             /* input_audio_buffer.clear */
};

/* The client's event_id, echoed in errors about its event. */
#define SOTTO__RT_MAX_EVENT_ID 64

typedef struct sotto__rt_msg {
    int kind;                       /* enum sotto__rt_kind */
    char event_id[SOTTO__RT_MAX_EVENT_ID + 1];
    /* SESSION_UPDATE: what the update sets; -1 / "" where it says
     * nothing. */
    int legacy;                     /* 1: transcription_session.update */
    int rate;                       /* input audio rate, Hz */
    int turn_detection;             /* 1 server_vad, 0 none (null) */
    char language[SOTTO__DIALECT_MAX_LANGUAGE + 1];
    int language_set;               /* language given (possibly "") */
    char prompt[SOTTO__DIALECT_MAX_PROMPT + 1];
    int prompt_set;
    /* APPEND: the decoded audio, in the caller's buffer. */
    size_t audio_n;
} sotto__rt_msg;

/*
 * Parses one Realtime client event.  For input_audio_buffer.append the
 * base64 audio is decoded into audio (capacity audio_cap bytes; more is an
 * error) and m->audio_n says how many bytes.  Returns 0; -1 with a message
 * in err and *code set to the OpenAI error code to send
 * ("invalid_json", "unknown_event", "invalid_value", "audio_too_large").
 * m->event_id is filled whenever the event has one, even on error.
 */
int sotto__rt_parse(const char *text, size_t len, sotto__rt_msg *m,
                    unsigned char *audio, size_t audio_cap,
                    const char **code, char *err, size_t errcap);

/* ---- OpenAI REST: POST /v1/audio/transcriptions ---------------------------- */

/* The form fields read (the file itself goes to the workers whole).
 * libwebsockets' multipart parser (lws_spa) collects each as a string. */
enum sotto__rest_field {
    SOTTO__REST_MODEL, SOTTO__REST_LANGUAGE, SOTTO__REST_PROMPT,
    SOTTO__REST_TEMPERATURE, SOTTO__REST_FORMAT, SOTTO__REST_GRANULARITIES,
    SOTTO__REST_GRANULARITIES2, SOTTO__REST_STREAM, SOTTO__REST_N_FIELDS
};
/* Their names, in that order ("timestamp_granularities[]" as the openai
 * package sends it, and without the brackets). */
extern const char *const sotto__rest_field_names[SOTTO__REST_N_FIELDS];

enum sotto__rest_format {
    SOTTO__REST_JSON = 1, SOTTO__REST_TEXT, SOTTO__REST_SRT, SOTTO__REST_VTT,
    SOTTO__REST_VERBOSE_JSON
};

typedef struct sotto__rest_req {
    int format;               /* enum sotto__rest_format; json */
    int words;                /* "word" among the granularities */
    int stream;               /* Server-Sent Events */
    float temperature;        /* 0 .. 1; 0 = the fallback ladder */
    char language[SOTTO__DIALECT_MAX_LANGUAGE + 1];   /* "" = default */
    char prompt[SOTTO__DIALECT_MAX_PROMPT + 1];
} sotto__rest_req;

/*
 * Checks the fields of one request (values[i] is the field's string, or
 * NULL when absent) into r.  Returns 0, or -1 with a message in err and
 * *param naming the field, for OpenAI's 400 error: a response_format,
 * granularity or stream value not known, a temperature outside 0 .. 1,
 * a language that is not a code, a prompt over the limit, or
 * timestamp_granularities without verbose_json.
 */
int sotto__rest_parse(const char *const values[SOTTO__REST_N_FIELDS], sotto__rest_req *r,
                      const char **param, char *err, size_t errcap);

/* ---- Wyoming ----------------------------------------------------------------- */

/* Longest header line (JSON and its newline). */
#define SOTTO__WY_MAX_HEADER 8192
/* Longest data block after the header. */
#define SOTTO__WY_MAX_DATA 65536
/* Longest event type. */
#define SOTTO__WY_MAX_TYPE 31

typedef struct sotto__wy_reader {
    unsigned char *buf;
    size_t n, cap;
    size_t used;              /* bytes of the event last returned */
    size_t max_payload;       /* a payload over this is an error */
} sotto__wy_reader;

typedef struct sotto__wy_event {
    char type[SOTTO__WY_MAX_TYPE + 1];
    struct cJSON *data;       /* an object (header "data" merged with the
                               * data block); owned, freed by the next
                               * sotto__wy_next or sotto__wy_reader_free */
    const unsigned char *payload;   /* in the reader's buffer, valid until
                                     * the next push or next */
    size_t payload_n;
} sotto__wy_event;

/* A reader taking payloads of at most max_payload bytes. */
void sotto__wy_reader_init(sotto__wy_reader *r, size_t max_payload);
/* Appends bytes read from the socket.  0, or -1 out of memory. */
int sotto__wy_reader_push(sotto__wy_reader *r, const void *data, size_t n);
/*
 * Takes the next complete event: 1 with *ev filled, 0 when more bytes are
 * needed, -1 when the stream is malformed (a header that is not a JSON
 * object with a string "type", a length over its limit, data that is not
 * a JSON object); err says why, and the connection cannot go on.
 */
int sotto__wy_next(sotto__wy_reader *r, sotto__wy_event *ev, char *err, size_t errcap);
void sotto__wy_event_clear(sotto__wy_event *ev);
void sotto__wy_reader_free(sotto__wy_reader *r);

/* Renders one event as Wyoming frames it (header line with data_length
 * and payload_length, the data JSON, the payload) into a new buffer;
 * *n gets its size.  data may be NULL.  NULL when out of memory. */
unsigned char *sotto__wy_render(const char *type, const struct cJSON *data,
                                const void *payload, size_t payload_n, size_t *n);

/* ---- native (/v1/stream) --------------------------------------------------- */

enum { SOTTO__NATIVE_CONFIG = 1, SOTTO__NATIVE_FINISH = 2 };
/* Audio formats a config may name (the gateway's enum gw_format has the
 * same values). */
enum { SOTTO__NATIVE_S16 = 1, SOTTO__NATIVE_F32 = 2, SOTTO__NATIVE_OPUS = 3 };

/* A text message of the native protocol.  Fields absent from a config are
 * 0 (format, sample_rate) or -1 (partials, vad, has_language). */
typedef struct {
    int kind;                 /* SOTTO__NATIVE_CONFIG or _FINISH */
    int format;               /* SOTTO__NATIVE_S16 ... or 0 */
    int sample_rate;          /* 8000 .. 192000, or 0 */
    int partials, vad;        /* 0, 1, or -1 */
    int has_language;         /* 1: language holds the code ("" = the
                               * server's default), -1: not given */
    char language[SOTTO__DIALECT_MAX_LANGUAGE + 1];
} sotto__native_msg;

/*
 * Parses one text message: 0 with *m filled, or -1 with *code set to the
 * error event's code ("bad_json", "bad_message", "unknown_type" or
 * "bad_config") and err saying why.  A message without "type" is a
 * config.  A config is checked whole: one bad field refuses all of it.
 */
int sotto__native_parse(const char *text, size_t len, sotto__native_msg *m,
                        const char **code, char *err, size_t errcap);

/* ---- what the gateway reads from the request itself ------------------------ */

/*
 * Whether a request carries the API key key: as "Bearer KEY" in authz
 * (the Authorization header's value; NULL if absent) or, for a WebSocket
 * upgrade, as a token "bearer.KEY" in protocols (the Sec-WebSocket-Protocol
 * header's value, a comma-separated list; NULL if absent or not an
 * upgrade).  Each candidate is compared by its SHA-256 digest with
 * CRYPTO_memcmp, so the time taken does not depend on how much of it
 * matches.  1 or 0.
 */
int sotto__auth_has_key(const char *authz, const char *protocols, const char *key);

/* Whether a Realtime upgrade's "intent" query argument (arg, as
 * libwebsockets returns it: "intent=VALUE" or "VALUE"; NULL if absent)
 * asks for a transcription session, the only kind sotto has. */
int sotto__rt_intent_ok(const char *arg);

#endif
