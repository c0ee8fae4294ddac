/*
 * sotto.h - the public API of libsotto, Whisper speech-to-text in plain C.
 *
 * This is the only header a program embedding sotto includes.  The sotto
 * command-line tool is built on it alone, the way curl's tool is built on
 * libcurl.
 *
 * Concepts
 * --------
 * A sotto_model is an immutable Whisper model loaded from a CTranslate2
 * model folder (the layout of faster-whisper models: model.bin,
 * config.json, tokenizer.json and/or vocabulary.txt).  Its weights are
 * mmap'd read-only, so every process that loads the same folder shares one
 * copy of them in memory.
 *
 * A sotto_result holds the segments (and optionally words) produced by one
 * call to sotto_transcribe().
 *
 * Threading contract
 * ------------------
 * - A sotto_model is never modified after sotto_model_create() returns.
 *   Any number of threads may call sotto_transcribe() on the same model at
 *   the same time; each call allocates its own working state.
 * - A sotto_result belongs to the caller and must not be used from two
 *   threads at once unless both only read it.
 * - OpenBLAS keeps its thread count per process: the n_threads of the most
 *   recent sotto_model_create() wins for the GEMMs.
 *
 * Errors
 * ------
 * Every function that can fail returns 0 on success or a negative
 * SOTTO_E* code.  sotto_strerror() turns a code into a static string, and
 * functions that cannot return a handle on failure take an (err, errcap)
 * buffer that receives a one-line message naming the problem.  The library
 * never exits the process and never prints: diagnostics go to the log
 * callback of sotto_model_params, if one is set.
 *
 * Ownership
 * ---------
 * Every *_create() or function returning an allocated object has a matching
 * *_destroy() or *_free() that accepts NULL.  Strings and arrays reached
 * through a result stay valid until the result is destroyed.
 */
#ifndef SOTTO_H
#define SOTTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SOTTO_VERSION "0.1.0"

/* Sample rate of all PCM that the engine takes, in Hz. */
#define SOTTO_SAMPLE_RATE 16000

/*
 * Longest audio accepted by the decoders and by sotto_transcribe(), in
 * seconds (4 hours).  At 16 kHz float32 that is 0.9 GB of PCM; longer
 * recordings must be split by the caller.
 */
#define SOTTO_MAX_AUDIO_SECONDS (4 * 3600)

/* Error codes.  All are negative; 0 is success. */
enum sotto_error {
    SOTTO_OK = 0,
    SOTTO_EINVAL = -1,        /* an argument is out of range or NULL */
    SOTTO_ENOMEM = -2,        /* an allocation failed */
    SOTTO_EIO = -3,           /* a file could not be opened or read */
    SOTTO_EMODEL = -4,        /* the model folder is corrupt or malformed */
    SOTTO_EUNSUPPORTED = -5,  /* valid input that sotto does not support yet */
    SOTTO_EAUDIO = -6,        /* the input is not audio sotto can decode */
    SOTTO_EEMPTY = -7,        /* the audio holds no samples */
    SOTTO_ENONFINITE = -8,    /* the audio holds NaN or infinite samples */
    SOTTO_ETOOLONG = -9,      /* the audio exceeds SOTTO_MAX_AUDIO_SECONDS */
    SOTTO_EINTERNAL = -10     /* a bug in sotto; please report it */
};

/* A static, human-readable description of an error code. */
const char *sotto_strerror(int code);

/* Log levels for the log callback. */
enum sotto_log_level {
    SOTTO_LOG_ERROR = 0,
    SOTTO_LOG_WARN = 1,
    SOTTO_LOG_INFO = 2,
    SOTTO_LOG_DEBUG = 3
};

/* The log callback.  It may be called from any thread that is inside a
 * sotto call; msg is a single line without a trailing newline. */
typedef void (*sotto_log_fn)(void *user, int level, const char *msg);

/* ------------------------------------------------------------------------
 * Model
 * ------------------------------------------------------------------------ */

typedef struct sotto_model sotto_model;

typedef struct sotto_model_params {
    int n_threads;          /* threads for inference; 0 = number of cores */
    sotto_log_fn log;       /* optional log sink */
    void *log_user;         /* passed to log */
} sotto_model_params;

sotto_model_params sotto_model_default_params(void);

/*
 * Loads the CTranslate2 Whisper model in folder `dir`.  On failure returns
 * a negative code, sets *out to NULL and writes a message naming the
 * problem (the file, the variable, the expected and found values) to err.
 */
int sotto_model_create(const char *dir, const sotto_model_params *params,
                       sotto_model **out, char *err, size_t errcap);
void sotto_model_destroy(sotto_model *model);

/* Facts about a loaded model. */
typedef struct sotto_model_info {
    int n_mels;             /* 80 or 128 */
    int n_vocab;
    int n_audio_layers, n_text_layers;
    int d_model, n_heads;
    int multilingual;       /* 1 for multilingual vocabularies (>= 51865 ids) */
    const char *dtype;      /* "float16" or "float32", as stored */
    size_t mapped_bytes;    /* size of the shared, read-only mapping */
} sotto_model_info;

void sotto_model_get_info(const sotto_model *model, sotto_model_info *info);

/* ------------------------------------------------------------------------
 * Offline transcription
 * ------------------------------------------------------------------------ */

#define SOTTO_MAX_TEMPERATURES 8

typedef struct sotto_transcribe_params {
    int beam_size;                  /* 1 = greedy; default 5 */
    int best_of;                    /* candidates when sampling at t > 0 */
    float patience;                 /* beam search patience; default 1 */
    float length_penalty;           /* default 1 */
    float temperatures[SOTTO_MAX_TEMPERATURES]; /* fallback ladder */
    int n_temperatures;             /* default 6: 0, 0.2 ... 1.0 */
    float compression_ratio_threshold; /* default 2.4; <= 0 disables */
    float log_prob_threshold;          /* default -1.0 */
    float no_speech_threshold;         /* default 0.6; < 0 disables */
    int condition_on_previous_text;    /* default 1 */
    float prompt_reset_on_temperature; /* default 0.5 */
    const char *initial_prompt;        /* optional text; copied */
    const char *language;              /* e.g. "en"; NULL = English on
                                        * .en models, detect otherwise */
    int without_timestamps;            /* default 0 */
    float max_initial_timestamp;       /* seconds; default 1.0 */
    int suppress_blank;                /* default 1 */
    int word_timestamps;               /* default 0 */
    int max_new_tokens;                /* per window; 0 = model limit */
    uint64_t seed;                     /* for sampling at t > 0 */
} sotto_transcribe_params;

sotto_transcribe_params sotto_transcribe_default_params(void);

typedef struct sotto_word {
    double start, end;      /* seconds from the start of the audio */
    const char *text;       /* UTF-8, with its leading space if any */
    float probability;
} sotto_word;

typedef struct sotto_segment {
    double start, end;      /* seconds */
    const char *text;       /* UTF-8 */
    const int *tokens;      /* the text and timestamp tokens sampled */
    int n_tokens;
    float avg_logprob;
    float no_speech_prob;
    float compression_ratio;
    float temperature;
    const sotto_word *words; /* NULL unless word_timestamps was set */
    int n_words;
} sotto_segment;

typedef struct sotto_result sotto_result;

/*
 * Transcribes `n` samples of 16 kHz mono float PCM in [-1, 1].  Rejects
 * empty input (SOTTO_EEMPTY), NaN or Inf samples (SOTTO_ENONFINITE) and
 * more than SOTTO_MAX_AUDIO_SECONDS (SOTTO_ETOOLONG).  The model is only
 * read: this may run on several threads at once.
 */
int sotto_transcribe(const sotto_model *model, const float *pcm, size_t n,
                     const sotto_transcribe_params *params,
                     sotto_result **out, char *err, size_t errcap);

int sotto_result_n_segments(const sotto_result *r);
const sotto_segment *sotto_result_segment(const sotto_result *r, int i);
double sotto_result_duration(const sotto_result *r); /* seconds of audio */
/* The full text: the segments' texts concatenated. */
const char *sotto_result_text(const sotto_result *r);
void sotto_result_destroy(sotto_result *r);

/* ------------------------------------------------------------------------
 * Audio input
 * ------------------------------------------------------------------------ */

/*
 * Decodes an audio file (WAV, FLAC, Ogg Vorbis and anything else
 * libsndfile reads, at any rate, channel count or sample format) to
 * 16 kHz mono float.  On success *pcm is allocated (free it with
 * sotto_pcm_free) and holds *n samples.  Errors: SOTTO_EIO (cannot open),
 * SOTTO_EAUDIO (not audio or a truncated header), SOTTO_EEMPTY,
 * SOTTO_ENONFINITE, SOTTO_ETOOLONG.
 */
int sotto_audio_decode_file(const char *path, float **pcm, size_t *n,
                            char *err, size_t errcap);

/* The same for a file held in memory. */
int sotto_audio_decode_memory(const void *data, size_t len, float **pcm,
                              size_t *n, char *err, size_t errcap);

/*
 * Converts raw interleaved signed 16-bit little-endian PCM at `rate` Hz
 * with `channels` channels to 16 kHz mono float.  A trailing partial frame
 * is an error (SOTTO_EAUDIO).
 */
int sotto_audio_from_s16le(const void *data, size_t len, int rate,
                           int channels, float **pcm, size_t *n,
                           char *err, size_t errcap);

void sotto_pcm_free(float *pcm);

#ifdef __cplusplus
}
#endif

#endif /* SOTTO_H */
