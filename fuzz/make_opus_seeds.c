/*
 * make_opus_seeds.c - writes the seed corpus of fuzz_opus (fuzz/seeds/opus)
 * from samples/jfk.wav: real speech encoded by libopus, and the payloads a
 * hostile or broken client sends.  Run once from the repository root when
 * the seeds need remaking:
 *
 *   cc -O1 -o /tmp/make_opus_seeds fuzz/make_opus_seeds.c -lopus -lsndfile
 *   /tmp/make_opus_seeds fuzz/seeds/opus
 *
 * A seed is byte 0 = the format (0 s16, 1 f32, 2 opus; fuzz_opus.c takes it
 * modulo 3), then payloads, each a 2-byte little-endian length and its
 * bytes.  libopus's output depends on its version only in detail; any
 * version gives valid packets.
 */
#include <opus.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PACKET 1500

typedef struct seed {
    unsigned char *p;
    size_t n, cap;
} seed;

static void put(seed *s, const void *b, size_t n)
{
    if (s->n + n > s->cap) {
        s->cap = (s->n + n) * 2;
        if ((s->p = realloc(s->p, s->cap)) == NULL) {
            perror("realloc");
            exit(1);
        }
    }
    memcpy(s->p + s->n, b, n);
    s->n += n;
}

static void payload(seed *s, const void *b, size_t n)
{
    unsigned char h[2] = { (unsigned char)(n & 0xff), (unsigned char)(n >> 8) };

    put(s, h, 2);
    put(s, b, n);
}

static void save(const char *dir, const char *name, seed *s)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    if ((f = fopen(path, "wb")) == NULL || fwrite(s->p, 1, s->n, f) != s->n ||
        fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    free(s->p);
    memset(s, 0, sizeof *s);
}

/* Encodes the first `ms` milliseconds of pcm (16 kHz) as packets of
 * frame_ms each, at the given bitrate and application, into an opus seed. */
static void encode(const char *dir, const char *name, const short *pcm,
                   size_t n, int ms, double frame_ms, int bitrate, int app)
{
    int err, fs = (int)(16 * frame_ms);
    OpusEncoder *enc = opus_encoder_create(16000, 1, app, &err);
    unsigned char pkt[MAX_PACKET];
    seed s = { 0 };
    unsigned char fmt = 2;

    if (enc == NULL) {
        fprintf(stderr, "opus_encoder_create: %s\n", opus_strerror(err));
        exit(1);
    }
    opus_encoder_ctl(enc, OPUS_SET_BITRATE(bitrate));
    put(&s, &fmt, 1);
    for (size_t at = 0; at + (size_t)fs <= n && at < (size_t)ms * 16; at += (size_t)fs) {
        int got = opus_encode(enc, pcm + at, fs, pkt, MAX_PACKET);
        if (got < 0) {
            fprintf(stderr, "opus_encode: %s\n", opus_strerror(got));
            exit(1);
        }
        payload(&s, pkt, (size_t)got);
    }
    opus_encoder_destroy(enc);
    save(dir, name, &s);
}

int main(int argc, char **argv)
{
    SF_INFO info = { 0 };
    SNDFILE *f;
    short *pcm;
    size_t n;
    seed s = { 0 };
    unsigned char b[64], fmt;

    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    if ((f = sf_open("samples/jfk.wav", SFM_READ, &info)) == NULL ||
        info.samplerate != 16000 || info.channels != 1) {
        fprintf(stderr, "samples/jfk.wav: want 16 kHz mono\n");
        return 1;
    }
    n = (size_t)info.frames;
    if ((pcm = malloc(n * sizeof *pcm)) == NULL ||
        sf_readf_short(f, pcm, (sf_count_t)n) != (sf_count_t)n)
        return 1;
    sf_close(f);

    /* Speech as sotto stream sends it (20 ms, 32 kbit/s, VOIP), and the
     * other frame sizes, rates and modes (CELT, hybrid, SILK) a client may
     * pick. */
    encode(argv[1], "voip-20ms-32k", pcm, n, 1000, 20, 32000, OPUS_APPLICATION_VOIP);
    encode(argv[1], "audio-10ms-64k", pcm, n, 400, 10, 64000, OPUS_APPLICATION_AUDIO);
    encode(argv[1], "lowdelay-2.5ms", pcm, n, 60, 2.5, 24000,
           OPUS_APPLICATION_RESTRICTED_LOWDELAY);
    encode(argv[1], "voip-60ms-8k", pcm, n, 1200, 60, 8000, OPUS_APPLICATION_VOIP);
    encode(argv[1], "audio-120ms-16k", pcm, n, 1200, 120, 16000, OPUS_APPLICATION_AUDIO);

    /* What a hostile client sends: an empty payload, a lone TOC byte of
     * every configuration class, a code-3 packet whose frame count says 48
     * frames, a truncated real packet, and an Ogg page and a WAV header
     * sent as if they were packets. */
    fmt = 2;
    put(&s, &fmt, 1);
    payload(&s, b, 0);
    for (int toc = 0; toc < 256; toc += 0x1b) {
        b[0] = (unsigned char)toc;
        payload(&s, b, 1);
    }
    b[0] = 0xfb;     /* CELT FB 20 ms, mono, code 3 */
    b[1] = 0xb0;     /* VBR, padding, 48 frames (over 120 ms) */
    memset(b + 2, 0xff, 30);
    payload(&s, b, 32);
    payload(&s, "OggS\0\x02\0\0\0\0\0\0\0\0", 14);
    payload(&s, "RIFF\x24\0\0\0WAVEfmt ", 16);
    save(argv[1], "hostile-packets", &s);

    /* PCM with samples split across payloads: odd s16 and f32 lengths. */
    fmt = 0;
    put(&s, &fmt, 1);
    payload(&s, pcm + 8000, 3);
    payload(&s, (const unsigned char *)(pcm + 8000) + 3, 317);
    payload(&s, pcm + 9000, 1);
    save(argv[1], "s16-split", &s);
    {
        float x[40];

        for (int i = 0; i < 40; i++)
            x[i] = pcm[8000 + i] / 32768.0f;
        fmt = 1;
        put(&s, &fmt, 1);
        payload(&s, x, 5);
        payload(&s, (const unsigned char *)x + 5, 150);
        payload(&s, (const unsigned char *)x + 155, 2);
        save(argv[1], "f32-split", &s);
    }
    free(pcm);
    return 0;
}
