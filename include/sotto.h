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
 * A sotto_stream transcribes live audio fed in pieces, and reports partial
 * and final text through events (see "Streaming" below).
 *
 * Threading contract
 * ------------------
 * - A sotto_model is never modified after sotto_model_create() returns.
 *   Any number of threads may call sotto_transcribe() on the same model at
 *   the same time, and any number of streams may run on it from any number
 *   of threads; each call or stream has its own working state.
 * - A sotto_stream is used by one thread at a time (it may move between
 *   threads).  It starts no threads of its own.
 * - A model must outlive its streams.  Once the last stream and the model
 *   are destroyed, nothing of them is left: memory, mappings and files are
 *   released, and a new model can be loaded at once.
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
    /* Optional path of Silero VAD weights (silero_vad_16k.safetensors, as
     * `sotto model fetch silero-vad` installs them).  Streams gate their
     * audio with it; without it, streams need vad = 0.  Copied. */
    const char *vad_path;
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
    int has_vad;            /* 1 when VAD weights were loaded */
} sotto_model_info;

void sotto_model_get_info(const sotto_model *model, sotto_model_info *info);

/* ------------------------------------------------------------------------
 * Offline transcription
 * ------------------------------------------------------------------------ */

#define SOTTO_MAX_TEMPERATURES 8

struct sotto_segment;

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
    /* Called by sotto_transcribe() after each window of up to 30 s with
     * the segments it added, in order (n_segments may be 0), and how many
     * seconds of the audio are done.  Those segments are final: the result
     * holds them as they are.  For progress, or to send the text out
     * before the whole recording is done.  The segments are valid during
     * the call only.  NULL (the default): not called. */
    void (*on_window)(void *user, const struct sotto_segment *segments,
                      int n_segments, double seconds_done);
    void *on_window_user;
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
 * Streaming
 * ------------------------------------------------------------------------
 *
 * A sotto_stream turns audio that arrives bit by bit (a microphone, a
 * socket) into text as it is spoken.  Audio is gated by Silero VAD:
 * silence never reaches the encoder.  While someone speaks, the stream
 * keeps the utterance in a rolling buffer and re-transcribes it every
 * min_chunk seconds of new audio; a word is committed once two consecutive
 * passes agree on it (LocalAgreement-2), and committed words never change.
 * When the speaker pauses for vad_min_silence_ms the rest of the utterance
 * is committed and the buffer starts afresh.
 *
 * The stream reports through events, read with sotto_stream_poll():
 *   SOTTO_EVENT_PARTIAL        the uncommitted rest of the current
 *                              hypothesis; the next partial replaces it;
 *   SOTTO_EVENT_FINAL          newly committed words, in order, with times;
 *   SOTTO_EVENT_UTTERANCE_END  the utterance's words are all committed;
 *   SOTTO_EVENT_ERROR          a pass failed (code and text say why); the
 *                              stream goes on with the next audio.
 * Every ending commits the words still pending after a last pass over the
 * audio not yet passed: sotto_stream_finish(), sotto_stream_cancel(s, 1)
 * and reaching max_seconds of audio alike.
 *
 * Threading: a stream belongs to one thread at a time; different streams
 * on one model may run on different threads at once.  Inference runs
 * inside sotto_stream_feed() and sotto_stream_finish(), on the calling
 * thread: a feed that completes min_chunk seconds of speech takes as long
 * as one pass over the buffer (tens to hundreds of milliseconds with
 * tiny.en), the others return at once.  The stream starts no threads, so
 * after sotto_stream_destroy() nothing of it is left running.
 */

typedef struct sotto_stream sotto_stream;

/* Largest float sample magnitude a stream takes (sotto_stream_feed): far
 * above any real audio, and low enough that no value inside the VAD
 * network can overflow. */
#define SOTTO_MAX_SAMPLE 1000.0f

/* Most resume_words a stream takes (sotto_stream_params): every word a
 * stream may have committed inside its buffer (at most 28 s of audio) at
 * over 9 words a second. */
#define SOTTO_MAX_RESUME_WORDS 256

typedef struct sotto_stream_params {
    int sample_rate;          /* Hz of the fed audio, 8000 .. 192000; any
                               * rate but 16000 is resampled; default 16000 */
    float min_chunk;          /* seconds of new audio between passes; 1.0 */
    float first_chunk;        /* seconds of speech before an utterance's
                               * first pass, for an early partial; 0.5 */
    float buffer_trim;        /* trim the buffer at a committed segment
                               * or sentence end once it is longer; 15 s */
    int vad;                  /* 1 = gate with Silero VAD (default); 0 =
                               * transcribe everything, one utterance */
    float vad_threshold;      /* speech probability threshold; 0.5 */
    int vad_min_silence_ms;   /* a pause this long ends an utterance; 600 */
    int vad_speech_pad_ms;    /* audio kept before speech starts; 300 */
    int vad_min_speech_ms;    /* shorter utterances are dropped; 150 */
    int encode_full_window;   /* 1 = pad the encoder input to 30 s as
                               * offline; default 0 = the real length */
    int force_committed;      /* 1 (default) = a pass is forced to start
                               * with the previous pass's tokens up to its
                               * last committed word, so the decoder steps
                               * only over uncommitted words; 0 = decode
                               * the whole buffer every pass */
    double max_seconds;       /* audio after this is refused and the stream
                               * ends with a flush; 0 = no limit but
                               * SOTTO_MAX_AUDIO_SECONDS */
    double time_offset;       /* stream time of the first sample, seconds
                               * (for a stream resumed elsewhere); 0 */
    int first_utterance;      /* id of the first utterance; 0 */
    /* The last words committed by the stream this one resumes (times in
     * stream time), for a stream moved to another process mid-utterance.
     * Passes drop words of their hypothesis that repeat them, as they drop
     * words this stream committed itself, so the resumed text neither
     * repeats nor loses a word at the cut.  They also join the prompt, so
     * decode.initial_prompt should hold only the committed text before
     * them.  Copied; at most SOTTO_MAX_RESUME_WORDS are used (the last). */
    const sotto_word *resume_words;
    int n_resume_words;
    /* Decoding options for each pass.  Defaults: those of
     * sotto_transcribe_default_params() but greedy (beam_size 1);
     * word_timestamps is always on.  Intermediate passes decode at the
     * first temperature only and are skipped when their text loops; the
     * last pass of an utterance decodes once too, and a loop there is cut
     * where it starts to repeat.
     * initial_prompt seeds the prompt (e.g. the committed text of a
     * resumed stream). */
    sotto_transcribe_params decode;
} sotto_stream_params;

sotto_stream_params sotto_stream_default_params(void);

enum sotto_event_type {
    SOTTO_EVENT_PARTIAL = 1,
    SOTTO_EVENT_FINAL = 2,
    SOTTO_EVENT_UTTERANCE_END = 3,
    SOTTO_EVENT_ERROR = 4
};

typedef struct sotto_event {
    int type;                 /* enum sotto_event_type */
    int utterance;            /* utterance id */
    double start, end;        /* stream time in seconds that the event's
                               * words span (end only for utterance_end) */
    double audio_time;        /* seconds of audio fed when it was made */
    const char *text;         /* UTF-8; "" when there is none */
    const sotto_word *words;  /* the words of text; times in stream time */
    int n_words;
    int code;                 /* SOTTO_EVENT_ERROR: the SOTTO_E* code */
} sotto_event;

/*
 * Creates a stream on `model` (which must outlive it).  params may be NULL
 * for the defaults.  Fails with SOTTO_EINVAL (and a message in err) for
 * out-of-range parameters, or when vad is on and the model has no VAD.
 */
int sotto_stream_create(const sotto_model *model,
                        const sotto_stream_params *params,
                        sotto_stream **out, char *err, size_t errcap);

/*
 * Feeds n mono samples at sample_rate Hz (0 = the stream's rate), any
 * amount from one sample to SOTTO_MAX_AUDIO_SECONDS.  Float samples are in
 * [-1, 1]; louder ones are taken as they are, up to SOTTO_MAX_SAMPLE in
 * magnitude.  Audio that cannot be taken is refused whole, with nothing
 * consumed, and the stream stays usable: n < 0 or pcm NULL (SOTTO_EINVAL),
 * a rate other than the stream's (SOTTO_EINVAL), NaN or Inf samples
 * (SOTTO_ENONFINITE), a sample beyond SOTTO_MAX_SAMPLE (SOTTO_EINVAL: not
 * audio, whatever it is), audio after finish or cancel (SOTTO_EINVAL), or
 * beyond max_seconds (SOTTO_ETOOLONG).  sotto_stream_error() then says
 * why.  A failed pass is not a failed feed: it gives an error event.
 */
int sotto_stream_feed(sotto_stream *s, const float *pcm, ptrdiff_t n,
                      int sample_rate);
int sotto_stream_feed_s16(sotto_stream *s, const int16_t *pcm, ptrdiff_t n,
                          int sample_rate);

/*
 * Ends the input: runs a last pass over the buffered speech, commits every
 * pending word and ends the utterance.  Later feeds are refused.
 */
int sotto_stream_finish(sotto_stream *s);

/*
 * Ends the input.  With flush it is sotto_stream_finish(): a last pass runs
 * over the speech not yet passed and every pending word is committed, so
 * nothing heard is dropped.  Without flush it ends at once, with no pass,
 * and the words not committed yet are dropped (the words already sent in
 * finals stay).
 */
int sotto_stream_cancel(sotto_stream *s, int flush);

/*
 * Ends the current utterance where the input stands, and goes on taking
 * audio (a push-to-talk release, a client's "commit" or "reset").  With
 * flush, a last pass runs over the utterance's buffer and its pending
 * words are committed, as at a pause; without it the pending words are
 * dropped (a client's "clear": the words already sent in finals stay).
 * Either way an utterance_end follows (unless the VAD judged the utterance
 * a blip, shorter than vad_min_speech_ms with no words), and the next
 * audio starts a new utterance.  Samples short of a whole VAD
 * frame, and the resampler's few milliseconds of delay, go to the next
 * utterance.  Nothing happens when no utterance is open.  SOTTO_EINVAL
 * after finish or cancel.
 */
int sotto_stream_end_utterance(sotto_stream *s, int flush);

/*
 * Takes the next event, if any: returns 1 and fills *ev, or 0 when there
 * is none.  Never blocks.  ev's strings and words stay valid until the next
 * sotto_stream_poll() or sotto_stream_destroy() on this stream.
 */
int sotto_stream_poll(sotto_stream *s, sotto_event *ev);

/* The message of the stream's last refused call ("" if none). */
const char *sotto_stream_error(const sotto_stream *s);

typedef struct sotto_stream_stats {
    double audio_seconds;     /* audio fed, in seconds */
    double speech_seconds;    /* of it, seconds the VAD passed on */
    double compute_seconds;   /* wall time spent in passes */
    int n_passes;             /* transcription passes run */
    int n_skipped;            /* of them, dropped because the text looped */
    int n_utterances;         /* utterances ended */
    double buffer_seconds;    /* audio in the buffer now */
    double committed_until;   /* end of the last committed word */
    double retained_from;     /* stream time of the earliest audio the
                               * stream may still transcribe again (the
                               * utterance buffer's or the pre-roll's
                               * start): a caller that keeps the audio to
                               * replay it elsewhere may forget what came
                               * before */
} sotto_stream_stats;

void sotto_stream_get_stats(const sotto_stream *s, sotto_stream_stats *st);

/* Frees the stream and everything it holds.  Accepts NULL. */
void sotto_stream_destroy(sotto_stream *s);

/* ------------------------------------------------------------------------
 * Audio input
 * ------------------------------------------------------------------------ */

/*
 * Decodes an audio file (WAV, FLAC, Ogg Vorbis and anything else
 * libsndfile reads, at any rate, channel count or sample format, and
 * Ogg/Opus through libopusfile) to 16 kHz mono float.  Ogg/Opus is
 * recognised by its first page (an OpusHead packet) in a regular file or
 * in memory; a FIFO or device path goes to libsndfile unsniffed.  On
 * success *pcm is allocated (free it with sotto_pcm_free) and holds *n
 * samples.  Errors: SOTTO_EIO (cannot open or read), SOTTO_EAUDIO (not
 * audio, a truncated header, or a damaged stream: for Ogg/Opus a missing
 * page or a page failing its checksum, an invalid packet, with the
 * libopusfile code such as OP_HOLE in the message), SOTTO_EUNSUPPORTED
 * (a rate, channel count or Opus header version beyond what is handled),
 * SOTTO_EEMPTY, SOTTO_ENONFINITE, SOTTO_ETOOLONG.
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
