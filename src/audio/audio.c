/*
 * audio.c - audio input: decodes files and in-memory files with
 * libsndfile or, for Ogg/Opus, libopusfile, converts raw s16le, and turns
 * everything into 16 kHz mono float PCM (the public sotto_audio_*
 * functions of include/sotto.h).
 *
 * Contract: every entry point returns 0 and a malloc'd buffer of *n > 0
 * samples at SOTTO_SAMPLE_RATE, or a negative SOTTO_E* code, *pcm == NULL,
 * *n == 0 and a one-line message naming the problem in err.  Input is read
 * in bounded chunks; each chunk is checked for NaN/Inf, downmixed to mono
 * by averaging the channels and pushed through a streaming libsoxr
 * resampler (skipped when the rate already is 16 kHz), so memory stays
 * proportional to the 16 kHz output, never to the input's rate, channel
 * count or declared length.  Durations over SOTTO_MAX_AUDIO_SECONDS are
 * refused from the header's frame count before anything is allocated, and
 * again while reading, so a lying header or an endless pipe cannot make us
 * allocate without bound.  Sample values of float files are kept as they
 * are (no clamping).  Every function frees everything it allocated on
 * every path; nothing here keeps state between calls.
 *
 * Format choice: input whose first Ogg page carries an OpusHead packet
 * (see is_ogg_opus) goes to libopusfile, everything else (Ogg Vorbis
 * included) to libsndfile.  A file is sniffed with pread, so only regular
 * files can be Opus: a FIFO or device named as a path is not sniffed (that
 * would consume its first bytes) and goes to libsndfile, which refuses
 * Opus; read such input into memory instead, as the CLI does for "-".
 * libopusfile decodes at 48 kHz; besides the 16 kHz output it holds the
 * headers of every link of a chained stream, which are bounded by the
 * input's size.  A stream cut short inside its last page decodes up to the
 * last complete page (libopusfile ends there cleanly, as players do);
 * anything missing or damaged before that is an error: a page lost or
 * failing its CRC (OP_HOLE), an undecodable packet, and a packet with an
 * illegal TOC byte, which libopusfile drops silently and we notice because
 * the decoded length then falls behind the stream's granule positions.
 *
 * Codes: SOTTO_EIO (cannot open or read, or a directory); SOTTO_EAUDIO
 * (format not recognised, malformed header, rate or channel count <= 0, a
 * decode error part-way, e.g. a FLAC cut short or an Ogg/Opus page
 * missing, or a trailing partial s16le frame); SOTTO_EUNSUPPORTED (rate
 * outside AUDIO_MIN_RATE..AUDIO_MAX_RATE, more than AUDIO_MAX_CHANNELS,
 * an Opus header version or channel mapping libopusfile does not
 * implement); SOTTO_EEMPTY (0 bytes or no frames);
 * SOTTO_ENONFINITE; SOTTO_ETOOLONG; SOTTO_EINVAL (NULL pointers, s16le
 * rate or channels <= 0); SOTTO_ENOMEM.
 *
 * Known libsndfile 1.2.0 behaviour we cannot reach from here: a malformed
 * MPEG stream makes its libmpg123 handle (created without MPG123_QUIET)
 * print warnings to stderr, and an Ogg stream whose Vorbis headers are
 * broken leaks about 6 KB inside sf_open_virtual/sf_open_fd.  Likewise
 * in libopusfile 0.12: a chained Ogg/Opus stream whose later link has
 * valid headers but invalid granule positions leaks that link's OpusTags
 * (its size, usually some hundred bytes) inside op_open_*.
 *
 * Thread safety: the functions may run on several threads at once, with
 * one caveat from libsndfile: when sf_open_* fails, the reason is kept in
 * a libsndfile global, so the text of an EAUDIO message may come from
 * another thread's failure if two fail at the same moment.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <opusfile.h>
#include <sndfile.h>
#include <soxr.h>

#include "common/common.h"

/* Lowest input sample rate accepted, in Hz: below this nothing is speech
 * and a header saying so is almost certainly corrupt. */
#define AUDIO_MIN_RATE 1000

/* Highest input sample rate accepted, in Hz (the highest rate in common
 * use, 8x 48 kHz). */
#define AUDIO_MAX_RATE 384000

/* Most channels accepted; more than this is a corrupt header in practice,
 * and the bound keeps one chunk of interleaved frames small. */
#define AUDIO_MAX_CHANNELS 64

/* Frames read (and converted, and resampled) per step.  One chunk of the
 * widest input is AUDIO_CHUNK_FRAMES * AUDIO_MAX_CHANNELS floats (1 MiB). */
#define AUDIO_CHUNK_FRAMES 4096

/* First capacity of the output buffer, in samples; it doubles from there
 * as decoded audio actually arrives (never from a header's promise). */
#define AUDIO_INITIAL_CAP 65536

/* Longest libsndfile error text copied into a message. */
#define AUDIO_SF_MSG_MAX 200

/* The rate libopusfile always decodes Opus at, in Hz. */
#define AUDIO_OPUS_RATE 48000

/* Bytes read to sniff Ogg/Opus: an Ogg page header (27 bytes), the
 * longest segment table (255 lacing values) and the 8-byte "OpusHead"
 * magic that starts the first packet. */
#define AUDIO_OGG_SNIFF_BYTES (27 + 255 + 8)

/* ------------------------------------------------------------------------
 * The sink: 16 kHz mono output, with an optional streaming resampler.
 * ------------------------------------------------------------------------ */

typedef struct sink {
    soxr_t soxr;        /* NULL when the input rate is already 16 kHz */
    double ratio;       /* output rate / input rate */
    float *buf;
    size_t n, cap;      /* samples held, samples allocated */
} sink;

static int sink_init(sink *s, int rate, char *err, size_t errcap)
{
    soxr_error_t e = NULL;
    soxr_io_spec_t io;
    soxr_quality_spec_t q;
    soxr_runtime_spec_t rt;

    memset(s, 0, sizeof *s);
    s->ratio = (double)SOTTO_SAMPLE_RATE / (double)rate;
    if (rate == SOTTO_SAMPLE_RATE)
        return SOTTO_OK;
    io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    q = soxr_quality_spec(SOXR_HQ, 0);
    rt = soxr_runtime_spec(1);
    s->soxr = soxr_create((double)rate, (double)SOTTO_SAMPLE_RATE, 1, &e,
                          &io, &q, &rt);
    if (s->soxr == NULL || e != NULL) {
        soxr_delete(s->soxr);
        s->soxr = NULL;
        return sotto__errf(err, errcap, SOTTO_ENOMEM,
                           "cannot create a %d -> %d Hz resampler: %s", rate,
                           SOTTO_SAMPLE_RATE, soxr_strerror(e));
    }
    return SOTTO_OK;
}

static void sink_free(sink *s)
{
    if (s->soxr != NULL)
        soxr_delete(s->soxr);
    free(s->buf);
    memset(s, 0, sizeof *s);
}

/* Makes room for `extra` more samples. */
static int sink_reserve(sink *s, size_t extra, char *err, size_t errcap)
{
    size_t want, cap;
    float *p;

    if (extra <= s->cap - s->n)
        return SOTTO_OK;
    if (extra > SIZE_MAX / sizeof(float) - s->n)
        return sotto__errf(err, errcap, SOTTO_ENOMEM,
                           "audio output buffer size overflows");
    want = s->n + extra;
    cap = s->cap ? s->cap : AUDIO_INITIAL_CAP;
    while (cap < want)
        cap = cap > SIZE_MAX / sizeof(float) / 2 ? want : cap * 2;
    p = realloc(s->buf, cap * sizeof(float));
    if (p == NULL)
        return sotto__errf(err, errcap, SOTTO_ENOMEM,
                           "out of memory for %zu samples of audio", cap);
    s->buf = p;
    s->cap = cap;
    return SOTTO_OK;
}

/* Appends `count` mono samples at the input rate. */
static int sink_push(sink *s, const float *mono, size_t count, char *err,
                     size_t errcap)
{
    size_t used = 0;
    int rc;

    if (s->soxr == NULL) {
        if ((rc = sink_reserve(s, count, err, errcap)) != SOTTO_OK)
            return rc;
        memcpy(s->buf + s->n, mono, count * sizeof(float));
        s->n += count;
        return SOTTO_OK;
    }
    while (used < count) {
        size_t left = count - used;
        size_t room = (size_t)((double)left * s->ratio) + 64;
        size_t idone = 0, odone = 0;
        soxr_error_t e;

        if ((rc = sink_reserve(s, room, err, errcap)) != SOTTO_OK)
            return rc;
        e = soxr_process(s->soxr, mono + used, left, &idone, s->buf + s->n,
                         s->cap - s->n, &odone);
        if (e != NULL)
            return sotto__errf(err, errcap, SOTTO_EINTERNAL,
                               "resampler failed: %s", soxr_strerror(e));
        if (idone == 0 && odone == 0)
            return sotto__errf(err, errcap, SOTTO_EINTERNAL,
                               "resampler made no progress");
        used += idone;
        s->n += odone;
    }
    return SOTTO_OK;
}

/* Flushes the resampler, checks its output and hands the buffer over. */
static int sink_finish(sink *s, float **pcm, size_t *n, char *err,
                       size_t errcap)
{
    int rc;
    size_t i;
    float *p;

    if (s->soxr != NULL) {
        for (;;) {
            size_t odone = 0;
            soxr_error_t e;

            if ((rc = sink_reserve(s, 4096, err, errcap)) != SOTTO_OK)
                return rc;
            e = soxr_process(s->soxr, NULL, 0, NULL, s->buf + s->n,
                             s->cap - s->n, &odone);
            if (e != NULL)
                return sotto__errf(err, errcap, SOTTO_EINTERNAL,
                                   "resampler failed: %s", soxr_strerror(e));
            if (odone == 0)
                break;
            s->n += odone;
        }
        /* Finite input near FLT_MAX can overshoot to Inf in the filter. */
        for (i = 0; i < s->n; i++)
            if (!isfinite(s->buf[i]))
                return sotto__errf(err, errcap, SOTTO_ENONFINITE,
                                   "resampling produced a non-finite sample "
                                   "at output index %zu (input values too "
                                   "large)", i);
    }
    if (s->n == 0)
        return sotto__errf(err, errcap, SOTTO_EEMPTY,
                           "audio too short: no samples after resampling");
    p = realloc(s->buf, s->n * sizeof(float));
    if (p != NULL)
        s->buf = p;
    *pcm = s->buf;
    *n = s->n;
    s->buf = NULL;
    s->n = s->cap = 0;
    return SOTTO_OK;
}

/* ------------------------------------------------------------------------
 * Shared checks
 * ------------------------------------------------------------------------ */

static int check_format(const char *what, int rate, int channels, char *err,
                        size_t errcap)
{
    if (rate <= 0)
        return sotto__errf(err, errcap, SOTTO_EAUDIO,
                           "%s: invalid sample rate %d Hz", what, rate);
    if (rate < AUDIO_MIN_RATE || rate > AUDIO_MAX_RATE)
        return sotto__errf(err, errcap, SOTTO_EUNSUPPORTED,
                           "%s: sample rate %d Hz is outside %d..%d Hz",
                           what, rate, AUDIO_MIN_RATE, AUDIO_MAX_RATE);
    if (channels <= 0)
        return sotto__errf(err, errcap, SOTTO_EAUDIO,
                           "%s: invalid channel count %d", what, channels);
    if (channels > AUDIO_MAX_CHANNELS)
        return sotto__errf(err, errcap, SOTTO_EUNSUPPORTED,
                           "%s: %d channels (at most %d are supported)",
                           what, channels, AUDIO_MAX_CHANNELS);
    return SOTTO_OK;
}

/* The most input frames that fit in SOTTO_MAX_AUDIO_SECONDS at `rate`. */
static int64_t max_frames_at(int rate)
{
    return (int64_t)SOTTO_MAX_AUDIO_SECONDS * (int64_t)rate;
}

/* `more`: frames is what was read so far, not the whole length. */
static int too_long(const char *what, int64_t frames, int more, int rate,
                    char *err, size_t errcap)
{
    return sotto__errf(err, errcap, SOTTO_ETOOLONG,
                       "%s: %s%lld frames at %d Hz is longer than the limit "
                       "of %d s (%lld frames)", what, more ? "more than " : "",
                       (long long)frames,
                       rate, SOTTO_MAX_AUDIO_SECONDS,
                       (long long)max_frames_at(rate));
}

/* Averages `frames` interleaved frames of `channels` into mono. */
static void downmix(const float *in, size_t frames, int channels, float *out)
{
    size_t f;
    int c;

    for (f = 0; f < frames; f++) {
        double sum = 0.0;

        for (c = 0; c < channels; c++)
            sum += in[f * (size_t)channels + (size_t)c];
        out[f] = (float)(sum / channels);
    }
}

/* Copies a libsndfile message, folding it onto one line. */
static void one_line(const char *in, char *out, size_t cap)
{
    size_t i = 0;

    if (in == NULL)
        in = "unknown error";
    for (; *in != '\0' && i + 1 < cap; in++)
        out[i++] = (*in == '\n' || *in == '\r' || *in == '\t') ? ' ' : *in;
    while (i > 0 && out[i - 1] == ' ')
        i--;
    out[i] = '\0';
}

/* ------------------------------------------------------------------------
 * libsndfile decoding
 * ------------------------------------------------------------------------ */

/*
 * Takes `frames` interleaved frames of `ch` channels decoded from the
 * input (frame `total` of the input is the first): refuses a non-finite
 * sample with a message that places it, downmixes into `mono` (room for
 * `frames`) and pushes the result into the sink.  Shared by every decoder.
 */
static int push_frames(sink *s, const float *chunk, float *mono, size_t frames,
                       int ch, int64_t total, int rate, const char *what,
                       char *err, size_t errcap)
{
    size_t i, cnt = frames * (size_t)ch;

    for (i = 0; i < cnt; i++) {
        if (!isfinite(chunk[i])) {
            long long frame = (long long)total + (long long)(i / (size_t)ch);

            return sotto__errf(err, errcap, SOTTO_ENONFINITE,
                               "%s: sample %lld (frame %lld, channel %d, "
                               "%.3f s) is %s", what,
                               frame * ch + (long long)(i % (size_t)ch), frame,
                               (int)(i % (size_t)ch), (double)frame / rate,
                               isnan(chunk[i]) ? "NaN" : "infinite");
        }
    }
    if (ch > 1)
        downmix(chunk, frames, ch, mono);
    return sink_push(s, ch > 1 ? mono : chunk, frames, err, errcap);
}

/* Reads an opened SNDFILE to the end into 16 kHz mono.  `what` names the
 * input in messages.  `seekable` says whether libsndfile could check the
 * header's sizes against the real length: on a pipe, writers such as
 * ffmpeg put placeholders (0xFFFFFFFF) there, so only the read counts. */
static int decode_sndfile(SNDFILE *sf, const SF_INFO *info, int seekable,
                          const char *what, float **pcm, size_t *n,
                          char *err, size_t errcap)
{
    int rc;
    const int ch = info->channels, rate = info->samplerate;
    float *chunk = NULL, *mono = NULL;
    int64_t total = 0, limit;
    sink s;
    char msg[AUDIO_SF_MSG_MAX];

    memset(&s, 0, sizeof s);
    if ((rc = check_format(what, rate, ch, err, errcap)) != SOTTO_OK)
        goto fail;
    limit = max_frames_at(rate);
    /* The declared length is believed only to refuse early, never to size
     * an allocation; SF_COUNT_MAX means "unknown". */
    if (seekable && info->frames != SF_COUNT_MAX && info->frames > limit) {
        rc = too_long(what, info->frames, 0, rate, err, errcap);
        goto fail;
    }
    chunk = malloc((size_t)AUDIO_CHUNK_FRAMES * (size_t)ch * sizeof(float));
    if (ch > 1)
        mono = malloc((size_t)AUDIO_CHUNK_FRAMES * sizeof(float));
    if (chunk == NULL || (ch > 1 && mono == NULL)) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM,
                         "%s: out of memory for the read buffer", what);
        goto fail;
    }
    if ((rc = sink_init(&s, rate, err, errcap)) != SOTTO_OK)
        goto fail;

    for (;;) {
        sf_count_t got = sf_readf_float(sf, chunk, AUDIO_CHUNK_FRAMES);

        if (got <= 0)
            break;
        if (got > AUDIO_CHUNK_FRAMES) {
            rc = sotto__errf(err, errcap, SOTTO_EINTERNAL,
                             "%s: libsndfile returned %lld frames for a "
                             "request of %d", what, (long long)got,
                             AUDIO_CHUNK_FRAMES);
            goto fail;
        }
        if (got > limit - total) {
            rc = too_long(what, total + got, 1, rate, err, errcap);
            goto fail;
        }
        rc = push_frames(&s, chunk, mono, (size_t)got, ch, total, rate, what,
                         err, errcap);
        if (rc != SOTTO_OK)
            goto fail;
        total += got;
    }
    if (sf_error(sf) != SF_ERR_NO_ERROR) {
        one_line(sf_strerror(sf), msg, sizeof msg);
        rc = sotto__errf(err, errcap, SOTTO_EAUDIO,
                         "%s: decoding failed after %lld frames: %s", what,
                         (long long)total, msg);
        goto fail;
    }
    if (total == 0 && info->frames > 0 && info->frames != SF_COUNT_MAX) {
        rc = sotto__errf(err, errcap, SOTTO_EAUDIO,
                         "%s: the header declares %lld frames but none could "
                         "be decoded", what, (long long)info->frames);
        goto fail;
    }
    if (total == 0) {
        rc = sotto__errf(err, errcap, SOTTO_EEMPTY, "%s: %s", what,
                         info->frames == 0 ? "the audio holds no frames" :
                         "no frames could be decoded");
        goto fail;
    }
    rc = sink_finish(&s, pcm, n, err, errcap);

fail:
    sink_free(&s);
    free(mono);
    free(chunk);
    return rc;
}

/* libsndfile virtual I/O over a read-only memory buffer. */
typedef struct memfile {
    const unsigned char *data;
    sf_count_t len, pos;
} memfile;

static sf_count_t mem_get_filelen(void *user)
{
    return ((const memfile *)user)->len;
}

static sf_count_t mem_seek(sf_count_t offset, int whence, void *user)
{
    memfile *m = user;
    sf_count_t base, pos;

    switch (whence) {
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = m->pos; break;
    case SEEK_END: base = m->len; break;
    default: return -1;
    }
    if (__builtin_add_overflow(base, offset, &pos) || pos < 0)
        return -1;
    m->pos = pos;   /* past the end is allowed, as with lseek */
    return pos;
}

static sf_count_t mem_read(void *ptr, sf_count_t count, void *user)
{
    memfile *m = user;
    sf_count_t avail;

    if (count <= 0 || m->pos >= m->len)
        return 0;
    avail = m->len - m->pos;
    if (count > avail)
        count = avail;
    memcpy(ptr, m->data + m->pos, (size_t)count);
    m->pos += count;
    return count;
}

static sf_count_t mem_write(const void *ptr, sf_count_t count, void *user)
{
    return 0;
}

static sf_count_t mem_tell(void *user)
{
    return ((const memfile *)user)->pos;
}

/* ------------------------------------------------------------------------
 * Ogg/Opus decoding (libopusfile)
 * ------------------------------------------------------------------------ */

/* Bytes of a canonical WAV header: RIFF, fmt and data chunk headers. */
#define AUDIO_WAV_MIN_HEADER 44

/*
 * When libsndfile refuses an input, says whether it is a RIFF/WAVE file cut
 * short: its RIFF header declares more bytes than the input has, or the
 * input is shorter than a WAV header.  Writes the reason, or "" if the
 * input does not look truncated, to out.  head holds the input's first
 * got bytes; size is its length.
 */
static void truncation_hint(const unsigned char *head, size_t got, uint64_t size,
                            char *out, size_t cap)
{
    out[0] = '\0';
    if (got < 12 || memcmp(head, "RIFF", 4) != 0 || memcmp(head + 8, "WAVE", 4) != 0)
        return;
    {
        uint64_t declared = (uint64_t)head[4] | (uint64_t)head[5] << 8 |
                            (uint64_t)head[6] << 16 | (uint64_t)head[7] << 24;
        declared += 8;
        if (size < AUDIO_WAV_MIN_HEADER)
            snprintf(out, cap, "truncated WAV header (%llu bytes, a header "
                     "takes at least %d)", (unsigned long long)size,
                     AUDIO_WAV_MIN_HEADER);
        else if (declared > size && declared != 0xffffffffull + 8)
            snprintf(out, cap, "truncated WAV file (its header declares %llu "
                     "bytes, there are %llu)", (unsigned long long)declared,
                     (unsigned long long)size);
    }
}

/* Says whether the `len` bytes at `p`, the start of an input, open with an
 * Ogg page whose first packet starts with the "OpusHead" magic.  Only the
 * first page is looked at: an Ogg file that starts with another stream
 * (Vorbis, Skeleton) stays with libsndfile.  Reads at most
 * AUDIO_OGG_SNIFF_BYTES. */
static int is_ogg_opus(const unsigned char *p, size_t len)
{
    size_t nseg;

    if (len < 27 || memcmp(p, "OggS", 4) != 0)
        return 0;
    nseg = p[26];
    if (nseg == 0 || len < 27 + nseg + 8)
        return 0;
    /* The first lacing value is the first packet's length when it is below
     * 255, so a value under 8 means a packet too short for the magic. */
    if (p[27] < 8)
        return 0;
    return memcmp(p + 27 + nseg, "OpusHead", 8) == 0;
}

/* libopusfile's error codes, with their names and what they mean in a
 * message ("<what> at 3.20 s (OP_HOLE)"). */
static const struct opus_code {
    int code;
    const char *name, *meaning;
} opus_codes[] = {
    {OP_FALSE, "OP_FALSE", "the stream ended before its headers"},
    {OP_EOF, "OP_EOF", "unexpected end of the stream"},
    {OP_HOLE, "OP_HOLE", "corrupt or truncated stream (a page is missing "
     "or fails its checksum)"},
    {OP_EREAD, "OP_EREAD", "read error"},
    {OP_EFAULT, "OP_EFAULT", "out of memory or internal libopusfile error"},
    {OP_EIMPL, "OP_EIMPL", "a feature libopusfile does not implement"},
    {OP_EINVAL, "OP_EINVAL", "invalid stream state"},
    {OP_ENOTFORMAT, "OP_ENOTFORMAT", "not an Ogg Opus stream"},
    {OP_EBADHEADER, "OP_EBADHEADER", "malformed or missing Opus header"},
    {OP_EVERSION, "OP_EVERSION", "unsupported Opus header version"},
    {OP_ENOTAUDIO, "OP_ENOTAUDIO", "not audio"},
    {OP_EBADPACKET, "OP_EBADPACKET", "undecodable Opus packet"},
    {OP_EBADLINK, "OP_EBADLINK", "corrupt link in a chained stream"},
    {OP_ENOSEEK, "OP_ENOSEEK", "the stream cannot be seeked"},
    {OP_EBADTIMESTAMP, "OP_EBADTIMESTAMP", "invalid granule positions, or "
     "less audio than the header's pre-skip"},
};

/* Returns the entry for a libopusfile code, or NULL for one it does not
 * document. */
static const struct opus_code *opus_code_find(int code)
{
    size_t i;

    for (i = 0; i < SOTTO__ARRAY_LEN(opus_codes); i++)
        if (opus_codes[i].code == code)
            return &opus_codes[i];
    return NULL;
}

/* Maps a libopusfile error code to a SOTTO_E* code: memory and read
 * failures keep their meaning, headers libopusfile cannot handle are
 * unsupported, and everything else is input we cannot decode. */
static int opus_to_sotto(int code)
{
    switch (code) {
    case OP_EFAULT: return SOTTO_ENOMEM;
    case OP_EREAD: return SOTTO_EIO;
    case OP_EIMPL:
    case OP_EVERSION: return SOTTO_EUNSUPPORTED;
    default: return SOTTO_EAUDIO;
    }
}

/* Reports a failed op_open_*; `what` names the input. */
static int opus_open_failed(const char *what, int code, char *err,
                            size_t errcap)
{
    const struct opus_code *c = opus_code_find(code);

    if (c == NULL)
        return sotto__errf(err, errcap, SOTTO_EAUDIO, "%s: ogg/opus: cannot "
                           "open the stream (libopusfile error %d)", what,
                           code);
    return sotto__errf(err, errcap, opus_to_sotto(code), "%s: ogg/opus: "
                       "cannot open the stream: %s (%s)", what, c->meaning,
                       c->name);
}

/* Reports a failed op_read_float after `frames` frames at 48 kHz. */
static int opus_read_failed(const char *what, int code, int64_t frames,
                            char *err, size_t errcap)
{
    const struct opus_code *c = opus_code_find(code);
    double at = (double)frames / AUDIO_OPUS_RATE;

    if (c == NULL)
        return sotto__errf(err, errcap, SOTTO_EAUDIO, "%s: ogg/opus: "
                           "decoding failed at %.2f s (libopusfile error %d)",
                           what, at, code);
    return sotto__errf(err, errcap, opus_to_sotto(code), "%s: ogg/opus: %s "
                       "at %.2f s (%s)", what, c->meaning, at, c->name);
}

/* libopusfile stream callbacks over a file descriptor the caller owns
 * (the stream is a pointer to it; there is no close callback). */
static int opus_fd_read(void *stream, unsigned char *ptr, int nbytes)
{
    int fd = *(const int *)stream;
    ssize_t got;

    if (nbytes <= 0)
        return 0;
    do
        got = read(fd, ptr, (size_t)nbytes);
    while (got < 0 && errno == EINTR);
    return got < 0 ? -1 : (int)got;
}

static int opus_fd_seek(void *stream, opus_int64 offset, int whence)
{
    int fd = *(const int *)stream;

    if ((opus_int64)(off_t)offset != offset)
        return -1;
    return lseek(fd, (off_t)offset, whence) < 0 ? -1 : 0;
}

static opus_int64 opus_fd_tell(void *stream)
{
    return (opus_int64)lseek(*(const int *)stream, 0, SEEK_CUR);
}

/* Reads an opened, seekable Ogg/Opus stream to the end into 16 kHz mono.
 * `what` names the input in messages.  Every link of a chained stream is
 * checked against AUDIO_MAX_CHANNELS and the total length against
 * SOTTO_MAX_AUDIO_SECONDS before anything is allocated.  After each read
 * the position the granule positions give (op_pcm_tell) must equal the
 * frames decoded so far: libopusfile silently drops a packet whose TOC
 * byte is illegal, and this is how such a packet, or any other jump in
 * the timestamps, shows up. */
static int decode_opus(OggOpusFile *of, const char *what, float **pcm,
                       size_t *n, char *err, size_t errcap)
{
    int rc, li, maxch = 1, bufsize;
    const int nlinks = op_link_count(of);
    float *chunk = NULL, *mono = NULL;
    const int64_t limit = max_frames_at(AUDIO_OPUS_RATE);
    int64_t total = 0;
    ogg_int64_t want;
    sink s;

    memset(&s, 0, sizeof s);
    if (nlinks <= 0) {
        rc = sotto__errf(err, errcap, SOTTO_EAUDIO, "%s: ogg/opus: the "
                         "stream holds no Opus link", what);
        goto fail;
    }
    for (li = 0; li < nlinks; li++) {
        int ch = op_head(of, li)->channel_count;

        if ((rc = check_format(what, AUDIO_OPUS_RATE, ch, err, errcap)) !=
            SOTTO_OK)
            goto fail;
        if (ch > maxch)
            maxch = ch;
    }
    /* The length from the granule positions is believed only to refuse
     * early, never to size an allocation; negative means unknown. */
    want = op_pcm_total(of, -1);
    if (want > limit) {
        rc = too_long(what, want, 0, AUDIO_OPUS_RATE, err, errcap);
        goto fail;
    }
    /* A read returns at most bufsize / channels frames of one link, so a
     * link with fewer channels than the widest gets more frames: the mono
     * buffer holds the most any link of 2 or more channels can return. */
    bufsize = AUDIO_CHUNK_FRAMES * maxch;
    chunk = malloc((size_t)bufsize * sizeof(float));
    if (maxch > 1)
        mono = malloc((size_t)(bufsize / 2) * sizeof(float));
    if (chunk == NULL || (maxch > 1 && mono == NULL)) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM,
                         "%s: out of memory for the read buffer", what);
        goto fail;
    }
    if ((rc = sink_init(&s, AUDIO_OPUS_RATE, err, errcap)) != SOTTO_OK)
        goto fail;

    for (;;) {
        int got, ch;
        ogg_int64_t at;

        li = -1;
        got = op_read_float(of, chunk, bufsize, &li);
        if (got == 0)
            break;
        if (got < 0) {
            rc = opus_read_failed(what, got, total, err, errcap);
            goto fail;
        }
        ch = li >= 0 && li < nlinks ? op_head(of, li)->channel_count : 0;
        if (ch <= 0 || ch > maxch || got > bufsize / ch) {
            rc = sotto__errf(err, errcap, SOTTO_EINTERNAL, "%s: libopusfile "
                             "returned %d frames of link %d (%d channels) "
                             "for a buffer of %d floats", what, got, li, ch,
                             bufsize);
            goto fail;
        }
        if (got > limit - total) {
            rc = too_long(what, total + got, 1, AUDIO_OPUS_RATE, err,
                          errcap);
            goto fail;
        }
        rc = push_frames(&s, chunk, mono, (size_t)got, ch, total, AUDIO_OPUS_RATE,
                         what, err, errcap);
        if (rc != SOTTO_OK)
            goto fail;
        total += got;
        at = op_pcm_tell(of);
        if (at != total) {
            rc = sotto__errf(err, errcap, SOTTO_EAUDIO, "%s: ogg/opus: "
                             "invalid or missing packet near %.2f s (%lld "
                             "frames decoded, the granule positions say "
                             "%lld)", what,
                             (double)(total - got) / AUDIO_OPUS_RATE,
                             (long long)total, (long long)at);
            goto fail;
        }
    }
    if (want >= 0 && total != want) {
        rc = sotto__errf(err, errcap, SOTTO_EAUDIO, "%s: ogg/opus: decoding "
                         "ended at %.2f s but the granule positions say "
                         "%.2f s", what, (double)total / AUDIO_OPUS_RATE,
                         (double)want / AUDIO_OPUS_RATE);
        goto fail;
    }
    if (total == 0) {
        rc = sotto__errf(err, errcap, SOTTO_EEMPTY, "%s: ogg/opus: the "
                         "stream holds no audio", what);
        goto fail;
    }
    rc = sink_finish(&s, pcm, n, err, errcap);

fail:
    sink_free(&s);
    free(mono);
    free(chunk);
    return rc;
}

static void clear_out(float **pcm, size_t *n)
{
    if (pcm != NULL)
        *pcm = NULL;
    if (n != NULL)
        *n = 0;
}

int sotto_audio_decode_file(const char *path, float **pcm, size_t *n,
                            char *err, size_t errcap)
{
    int rc, fd = -1, e;
    SNDFILE *sf = NULL;
    OggOpusFile *of = NULL;
    SF_INFO info;
    struct stat st;
    char msg[AUDIO_SF_MSG_MAX];
    unsigned char head[AUDIO_OGG_SNIFF_BYTES];
    ssize_t got = 0;

    clear_out(pcm, n);
    if (path == NULL || pcm == NULL || n == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_EINVAL,
                         "sotto_audio_decode_file: NULL argument");
        goto fail;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        e = errno;
        rc = sotto__errf(err, errcap, SOTTO_EIO, "cannot open %s: %s", path,
                         strerror_r(e, msg, sizeof msg));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = sotto__errf(err, errcap, SOTTO_EIO,
                         "cannot read %s: it is a directory", path);
        goto fail;
    }
    if (S_ISREG(st.st_mode) && st.st_size == 0) {
        rc = sotto__errf(err, errcap, SOTTO_EEMPTY,
                         "%s: the file is empty (0 bytes)", path);
        goto fail;
    }
    /* Only a regular file can be sniffed without consuming it. */
    if (S_ISREG(st.st_mode)) {
        do
            got = pread(fd, head, sizeof head, 0);
        while (got < 0 && errno == EINTR);
        if (got < 0) {
            e = errno;
            rc = sotto__errf(err, errcap, SOTTO_EIO, "cannot read %s: %s",
                             path, strerror_r(e, msg, sizeof msg));
            goto fail;
        }
        if (is_ogg_opus(head, (size_t)got)) {
            static const OpusFileCallbacks cb = {
                opus_fd_read, opus_fd_seek, opus_fd_tell, NULL};

            of = op_open_callbacks(&fd, &cb, NULL, 0, &e);
            if (of == NULL) {
                rc = opus_open_failed(path, e, err, errcap);
                goto fail;
            }
            rc = decode_opus(of, path, pcm, n, err, errcap);
            goto fail;
        }
    }
    memset(&info, 0, sizeof info);
    /* Our descriptor, not the path: libsndfile then cannot guess a raw
     * format from the file name's extension, and we close it ourselves. */
    sf = sf_open_fd(fd, SFM_READ, &info, SF_FALSE);
    if (sf == NULL) {
        char hint[128];

        one_line(sf_strerror(NULL), msg, sizeof msg);
        hint[0] = '\0';
        if (S_ISREG(st.st_mode))
            truncation_hint(head, got > 0 ? (size_t)got : 0, (uint64_t)st.st_size,
                            hint, sizeof hint);
        if (hint[0] != '\0')
            rc = sotto__errf(err, errcap, SOTTO_EAUDIO, "%s: %s (libsndfile: %s)",
                             path, hint, msg);
        else
            rc = sotto__errf(err, errcap, SOTTO_EAUDIO,
                             "%s: not a readable audio file: %s", path, msg);
        goto fail;
    }
    rc = decode_sndfile(sf, &info, S_ISREG(st.st_mode), path, pcm, n, err,
                        errcap);

fail:
    if (of != NULL)
        op_free(of);
    if (sf != NULL)
        sf_close(sf);
    if (fd >= 0)
        close(fd);
    return rc;
}

int sotto_audio_decode_memory(const void *data, size_t len, float **pcm,
                              size_t *n, char *err, size_t errcap)
{
    int rc, e;
    SNDFILE *sf = NULL;
    OggOpusFile *of = NULL;
    SF_INFO info;
    SF_VIRTUAL_IO vio;
    memfile m;
    char msg[AUDIO_SF_MSG_MAX];
    static const char what[] = "audio in memory";

    clear_out(pcm, n);
    if ((data == NULL && len > 0) || pcm == NULL || n == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_EINVAL,
                         "sotto_audio_decode_memory: NULL argument");
        goto fail;
    }
    if (len == 0) {
        rc = sotto__errf(err, errcap, SOTTO_EEMPTY,
                         "%s: the buffer is empty (0 bytes)", what);
        goto fail;
    }
    if ((uint64_t)len > (uint64_t)INT64_MAX) {
        rc = sotto__errf(err, errcap, SOTTO_EINVAL, "%s: %zu bytes is too "
                         "large", what, len);
        goto fail;
    }
    if (is_ogg_opus(data, len)) {
        of = op_open_memory(data, len, &e);
        if (of == NULL) {
            rc = opus_open_failed(what, e, err, errcap);
            goto fail;
        }
        rc = decode_opus(of, what, pcm, n, err, errcap);
        goto fail;
    }
    m.data = data;
    m.len = (sf_count_t)len;
    m.pos = 0;
    vio.get_filelen = mem_get_filelen;
    vio.seek = mem_seek;
    vio.read = mem_read;
    vio.write = mem_write;
    vio.tell = mem_tell;
    memset(&info, 0, sizeof info);
    sf = sf_open_virtual(&vio, SFM_READ, &info, &m);
    if (sf == NULL) {
        char hint[128];

        one_line(sf_strerror(NULL), msg, sizeof msg);
        truncation_hint(data, len, (uint64_t)len, hint, sizeof hint);
        if (hint[0] != '\0')
            rc = sotto__errf(err, errcap, SOTTO_EAUDIO, "%s: %s (libsndfile: %s)",
                             what, hint, msg);
        else
            rc = sotto__errf(err, errcap, SOTTO_EAUDIO,
                             "%s (%zu bytes): not readable audio: %s", what, len,
                             msg);
        goto fail;
    }
    rc = decode_sndfile(sf, &info, 1, what, pcm, n, err, errcap);

fail:
    if (of != NULL)
        op_free(of);
    if (sf != NULL)
        sf_close(sf);
    return rc;
}

/* ------------------------------------------------------------------------
 * Raw s16le
 * ------------------------------------------------------------------------ */

int sotto_audio_from_s16le(const void *data, size_t len, int rate,
                           int channels, float **pcm, size_t *n,
                           char *err, size_t errcap)
{
    int rc;
    const unsigned char *p = data;
    size_t frame_bytes, frames, done = 0;
    float *chunk = NULL, *mono = NULL;
    sink s;
    static const char what[] = "s16le audio";

    memset(&s, 0, sizeof s);
    clear_out(pcm, n);
    if ((data == NULL && len > 0) || pcm == NULL || n == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_EINVAL,
                         "sotto_audio_from_s16le: NULL argument");
        goto fail;
    }
    if (rate <= 0 || channels <= 0) {
        rc = sotto__errf(err, errcap, SOTTO_EINVAL,
                         "%s: invalid rate %d Hz or channel count %d", what,
                         rate, channels);
        goto fail;
    }
    if ((rc = check_format(what, rate, channels, err, errcap)) != SOTTO_OK)
        goto fail;
    frame_bytes = 2 * (size_t)channels;
    if (len % frame_bytes != 0) {
        rc = sotto__errf(err, errcap, SOTTO_EAUDIO,
                         "%s: trailing partial frame (%zu bytes is not a "
                         "multiple of %zu bytes per frame)", what, len,
                         frame_bytes);
        goto fail;
    }
    if (len == 0) {
        rc = sotto__errf(err, errcap, SOTTO_EEMPTY,
                         "%s: the buffer is empty (0 bytes)", what);
        goto fail;
    }
    frames = len / frame_bytes;
    if ((uint64_t)frames > (uint64_t)max_frames_at(rate)) {
        rc = too_long(what, (int64_t)frames, 0, rate, err, errcap);
        goto fail;
    }
    chunk = malloc((size_t)AUDIO_CHUNK_FRAMES * (size_t)channels *
                   sizeof(float));
    mono = malloc((size_t)AUDIO_CHUNK_FRAMES * sizeof(float));
    if (chunk == NULL || mono == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM,
                         "%s: out of memory for the conversion buffer", what);
        goto fail;
    }
    if ((rc = sink_init(&s, rate, err, errcap)) != SOTTO_OK)
        goto fail;
    while (done < frames) {
        size_t cnt = frames - done, i, nsamp;
        const unsigned char *q = p + done * frame_bytes;

        if (cnt > AUDIO_CHUNK_FRAMES)
            cnt = AUDIO_CHUNK_FRAMES;
        nsamp = cnt * (size_t)channels;
        for (i = 0; i < nsamp; i++) {
            int v = q[2 * i] | (q[2 * i + 1] << 8);

            if (v >= 32768)
                v -= 65536;
            chunk[i] = (float)v / 32768.0f;
        }
        if (channels > 1)
            downmix(chunk, cnt, channels, mono);
        rc = sink_push(&s, channels > 1 ? mono : chunk, cnt, err, errcap);
        if (rc != SOTTO_OK)
            goto fail;
        done += cnt;
    }
    rc = sink_finish(&s, pcm, n, err, errcap);

fail:
    sink_free(&s);
    free(mono);
    free(chunk);
    return rc;
}

void sotto_pcm_free(float *pcm)
{
    free(pcm);
}
