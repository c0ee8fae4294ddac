/*
 * worker.h - the engine worker's stream configuration, as the gateway
 * sends it in an OPEN message (internal to `sotto serve`).
 *
 * sotto__worker_main() (server.h) is the worker itself; this header only
 * exposes the parser of the OPEN payload, so that fuzz/fuzz_ipc.c can run
 * it without a model.  The parser takes untrusted bytes: it never crashes
 * on them, checks every length against the limits below, and answers a
 * field of the wrong type or out of range with an error message rather
 * than a guess.
 */
#ifndef SOTTO_SERVER_WORKER_H
#define SOTTO_SERVER_WORKER_H

#include <stddef.h>

#include "sotto.h"

/* Streams one worker runs at once; an OPEN beyond it is refused. */
#define SOTTO__WORKER_MAX_STREAMS 256
/* Bytes of "prompt" (the stream's initial prompt).  The stream keeps only
 * the last 2000 bytes of committed text as its prompt, so a resumed
 * stream never needs more. */
#define SOTTO__WORKER_MAX_PROMPT 4096
/* Entries of "resume_words", and bytes of the text of one of them. */
#define SOTTO__WORKER_MAX_RESUME_WORDS 1024
#define SOTTO__WORKER_MAX_WORD 256
/* Characters of "language" (Whisper codes are 2 or 3 letters). */
#define SOTTO__WORKER_MAX_LANGUAGE 15
/* Largest "time_offset" and word time accepted, in seconds (about 116
 * days: far beyond any stream, small enough for exact milliseconds). */
#define SOTTO__WORKER_MAX_TIME 1e7
/* Largest "skip" (bytes of PCM dropped at the start of a resumed stream
 * to align it with the first stream's VAD frames: under one 512-sample
 * frame, at up to 192 kHz f32). */
#define SOTTO__WORKER_MAX_SKIP 32768
/* Largest "first_utterance". */
#define SOTTO__WORKER_MAX_UTTERANCE 1000000000

enum sotto__worker_format {
    SOTTO__WORKER_S16 = 1,    /* s16le mono at "rate" Hz */
    SOTTO__WORKER_F32 = 2,    /* f32le mono at "rate" Hz */
    SOTTO__WORKER_OPUS = 3    /* one Opus packet per AUDIO; decoded to
                               * 16 kHz mono, "rate" ignored */
};

/* A stream's configuration.  The strings and words are owned by it. */
typedef struct sotto__worker_open {
    int format;               /* enum sotto__worker_format */
    int rate;                 /* Hz, SOTTO's stream limits (8000..192000) */
    char language[SOTTO__WORKER_MAX_LANGUAGE + 1]; /* "" = model default */
    int vad;                  /* 0 or 1 */
    int partials;             /* 0 or 1: send partial events */
    double max_seconds;       /* 0 .. SOTTO_MAX_AUDIO_SECONDS; 0 = none */
    double time_offset;       /* 0 .. SOTTO__WORKER_MAX_TIME */
    int first_utterance;      /* 0 .. SOTTO__WORKER_MAX_UTTERANCE */
    size_t skip;              /* PCM bytes to drop first; 0 .. MAX_SKIP */
    char *prompt;             /* NULL or a NUL-terminated copy */
    sotto_word *resume_words; /* NULL or n_resume_words words, in order */
    int n_resume_words;
    char *resume_text;        /* the words' texts, NUL-separated */
} sotto__worker_open;

/* Fills o with the built-in defaults: s16 at 16000 Hz, the model's
 * language, vad and partials on, no limit, offset 0, utterance 0, no
 * prompt, no resume words. */
void sotto__worker_open_init(sotto__worker_open *o);

/*
 * Parses an OPEN payload (a JSON object of len bytes, not necessarily
 * NUL-terminated) into o, which holds the defaults on entry (from
 * sotto__worker_open_init(), possibly adjusted by the caller): each field
 * present replaces its default, unknown fields are ignored, and "language"
 * or "prompt" may be null for the default.  Returns 0, or -1 with a
 * one-line message naming the field in err; o then holds no allocations
 * and needs no free (but freeing it is harmless).
 */
int sotto__worker_parse_open(const char *json, size_t len,
                             sotto__worker_open *o, char *err, size_t cap);

/* Frees what o owns and resets those fields. */
void sotto__worker_open_free(sotto__worker_open *o);

/* Samples of the longest Opus packet (120 ms) at the decoder's 16 kHz. */
#define SOTTO__WORKER_OPUS_MAX_SAMPLES (SOTTO_SAMPLE_RATE * 120 / 1000)

/*
 * How a worker turns one stream's AUDIO payloads into samples: s16le or
 * f32le, where a sample split between two payloads is carried over so
 * that it does not shift every sample after it, or one raw Opus packet
 * per payload, decoded at 16 kHz mono.  The payload bytes come from the
 * client, so this is a parser of outside data (fuzz/fuzz_opus.c).
 */
typedef struct sotto__worker_conv {
    int format;                   /* enum sotto__worker_format */
    struct OpusDecoder *opus;     /* format opus only; owned by the stream */
    unsigned char carry[4];       /* bytes of a sample split across chunks */
    int n_carry;
} sotto__worker_conv;

/*
 * Converts one payload of len bytes into *buf (int16 for s16, float for
 * f32 and opus), growing *buf (of *cap bytes, owned by the caller and
 * reused across calls) as needed; *n gets the sample count.  Returns 0,
 * or an error code with a one-line message in err: SOTTO_EAUDIO for a
 * packet Opus refuses (the stream goes on), SOTTO_ENOMEM.
 */
int sotto__worker_convert(sotto__worker_conv *cv, const unsigned char *p,
                          size_t len, unsigned char **buf, size_t *cap,
                          size_t *n, char *err, size_t errcap);

#endif
