/*
 * ipc.h - the message format between the gateway and the engine workers
 * (internal to `sotto serve`).
 *
 * Each worker is connected to the gateway by one AF_UNIX SOCK_STREAM
 * socketpair, which the supervisor creates when it spawns the worker.  Both
 * directions carry a sequence of messages: a fixed 16-byte header in host
 * byte order (both ends are the same binary on the same machine), then
 * `len` bytes of payload.  A reader checks `len` against
 * SOTTO__IPC_MAX_PAYLOAD and `type` against the known types before it
 * reads the payload; a message that fails either check means the peer is
 * broken, and the connection is dropped (the worker restarted), never
 * trusted.
 *
 * Payloads are either raw audio (AUDIO) or one JSON object (everything
 * else), so that every message can be logged and fuzzed as text.
 *
 * Gateway -> worker
 *   OPEN    stream  JSON stream config (see docs/server.md):
 *                   {"format":"s16"|"f32"|"opus","rate":16000,
 *                    "language":"en"|null,"vad":true,"partials":true,
 *                    "max_seconds":0,"time_offset":0,"first_utterance":0,
 *                    "prompt":"...","resume_words":[{"text","start","end"}],
 *                    "skip":0}  (skip: PCM bytes to drop first, which puts
 *                    a resumed stream on the first one's VAD frame grid)
 *   AUDIO   stream  seq = the chunk's number in the stream (from 1);
 *                   payload = audio bytes in the stream's format (for
 *                   opus: one packet)
 *   FINISH  stream  end of input: flush, send the last events, then CLOSED
 *   DROP    stream  forget the stream at once (its client is gone)
 *   JOB     job     an offline transcription (the OpenAI REST endpoint):
 *                   JSON {"language":"en"|null,"prompt":"...",
 *                   "temperature":0,"words":bool,"pieces":n,"pcm":bool}
 *                   (pieces: split a long recording this many ways; pcm:
 *                   the data is a piece, s16le at 16 kHz); the file follows in
 *                   JOB_DATA messages (seq from 1), then JOB_RUN
 *   JOB_DATA job    up to SOTTO__IPC_MAX_PAYLOAD bytes of the file
 *   JOB_RUN  job    the file is complete: decode it and transcribe it;
 *                   JSON {"bytes":n}
 *   CUT     stream  end the current utterance after the audio sent so far
 *                   and go on (sotto_stream_end_utterance); JSON
 *                   {"flush":true} commits its pending words after a last
 *                   pass, {"flush":false} drops them
 *
 * Worker -> gateway
 *   READY   0       JSON {"pid":n,"model":"...","n_mels":n,"vad":bool,
 *                   "multilingual":bool},
 *                   sent once, after the model is loaded
 *   BEAT    0       heartbeat, once per SOTTO__IPC_BEAT_MS; `stream` is
 *                   the stream in inference (0 when idle) and `seq` the
 *                   milliseconds it has been in it; no payload
 *   EVENT   stream  JSON event: {"type":"partial"|"final"|"utterance_end"|
 *                   "error","utterance":n,"start":s,"end":s,
 *                   "audio_time":s,"text":"...",
 *                   "words":[{"text","start","end","probability"}],
 *                   "code":n,"message":"..."}
 *   ACK     stream  seq = the last AUDIO chunk taken in; JSON
 *                   {"audio_time":s,"retained_from":s}: the stream time
 *                   of the audio taken so far, and the earliest stream time
 *                   the stream may still need again (audio before it can
 *                   be forgotten by the gateway's replay buffer); after a
 *                   CUT, one more ACK with "cut":true follows the cut's
 *                   events
 *   JOB_SEGMENTS job  JSON {"segments":[{"start","end","text","tokens",
 *                   "avg_logprob","compression_ratio","no_speech_prob",
 *                   "temperature","words":[...]}],"done":s}: the segments
 *                   of one finished 30-second window, and the seconds of
 *                   audio done (possibly no segments: progress)
 *   JOB_PIECE job   seq = k: the job was split and its piece k (of "of")
 *                   is for another worker: JSON {"index":k,"of":n,
 *                   "offset":s,"bytes":n}, its s16le 16 kHz samples
 *                   following in JOB_PIECE_DATA messages (seq = k); the
 *                   worker transcribes piece 0 itself
 *   JOB_PIECE_DATA job  up to SOTTO__IPC_MAX_PAYLOAD bytes of piece seq
 *   JOB_DONE job    JSON {"ok":true,"duration":s,"language":"en",
 *                   "pieces":n} (duration: the whole recording's) or
 *                   {"ok":false,"status":415,"message":"..."}; the job is
 *                   gone from the worker
 *   CLOSED  stream  JSON {"reason":"finished"|"dropped"|"error",
 *                   "message":"...","audio_seconds":s,...}: the stream is
 *                   gone from the worker and no more messages for it follow
 */
#ifndef SOTTO_SERVER_IPC_H
#define SOTTO_SERVER_IPC_H

#include <stddef.h>
#include <stdint.h>

/* The largest payload of one message: an audio chunk is at most
 * SOTTO__SERVE_MAX_FRAME bytes (1 MiB), an event a few KiB. */
#define SOTTO__IPC_MAX_PAYLOAD (1u << 20)
/* Largest recording a worker splits across workers, in bytes of s16
 * PCM (about 2.3 hours): the gateway holds the pieces until they run. */
#define SOTTO__IPC_MAX_PIECE_BYTES ((size_t)256 << 20)
/* Heartbeat period of a worker, in milliseconds. */
#define SOTTO__IPC_BEAT_MS 500

enum sotto__ipc_type {
    SOTTO__IPC_OPEN = 1,
    SOTTO__IPC_AUDIO = 2,
    SOTTO__IPC_FINISH = 3,
    SOTTO__IPC_DROP = 4,
    SOTTO__IPC_CUT = 5,
    SOTTO__IPC_JOB = 6,
    SOTTO__IPC_JOB_DATA = 7,
    SOTTO__IPC_JOB_RUN = 8,
    SOTTO__IPC_READY = 16,
    SOTTO__IPC_BEAT = 17,
    SOTTO__IPC_EVENT = 18,
    SOTTO__IPC_ACK = 19,
    SOTTO__IPC_CLOSED = 20,
    SOTTO__IPC_JOB_SEGMENTS = 21,
    SOTTO__IPC_JOB_DONE = 22,
    SOTTO__IPC_JOB_PIECE = 23,
    SOTTO__IPC_JOB_PIECE_DATA = 24
};

typedef struct sotto__ipc_hdr {
    uint32_t len;     /* payload bytes, <= SOTTO__IPC_MAX_PAYLOAD */
    uint16_t type;    /* enum sotto__ipc_type */
    uint16_t flags;   /* 0; reserved */
    uint32_t stream;  /* stream id, 0 for worker-level messages */
    uint32_t seq;     /* per type, see above */
} sotto__ipc_hdr;

#define SOTTO__IPC_HDR_SIZE 16

/* A name for a type, "?" for unknown ones. */
const char *sotto__ipc_type_name(int type);

/* Whether the header is acceptable: a known type, flags 0, len within the
 * limit.  Returns 0 or -1 with a reason in err. */
int sotto__ipc_check(const sotto__ipc_hdr *h, char *err, size_t errcap);

/*
 * Incremental reader for a non-blocking socket: feed it what read()
 * returned, take complete messages out.  The buffer grows to at most
 * SOTTO__IPC_HDR_SIZE + SOTTO__IPC_MAX_PAYLOAD bytes.
 */
typedef struct sotto__ipc_reader {
    unsigned char *buf;
    size_t n, cap;
} sotto__ipc_reader;

/* Appends bytes.  Returns 0, or -1 when out of memory. */
int sotto__ipc_reader_push(sotto__ipc_reader *r, const void *data, size_t n);
/*
 * Takes the next complete message: returns 1 and fills *h and *payload
 * (valid until the next push or next call), 0 when none is complete yet,
 * or -1 when the stream of bytes is malformed (err says why).
 */
int sotto__ipc_reader_next(sotto__ipc_reader *r, sotto__ipc_hdr *h,
                           const unsigned char **payload,
                           char *err, size_t errcap);
void sotto__ipc_reader_free(sotto__ipc_reader *r);

/* Writes one whole message to a blocking fd (retrying on EINTR and short
 * writes).  Returns 0 or -1 with errno set. */
int sotto__ipc_write(int fd, int type, uint32_t stream, uint32_t seq,
                     const void *payload, size_t len);

/* Serializes a header into 16 bytes (for callers that queue messages). */
void sotto__ipc_pack(unsigned char out[SOTTO__IPC_HDR_SIZE], int type,
                     uint32_t stream, uint32_t seq, size_t len);

#endif
