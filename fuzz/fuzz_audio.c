/*
 * fuzz_audio.c - libFuzzer target for the audio input.
 *
 * Feeds each input to sotto_audio_decode_memory() (so through libsndfile,
 * or libopusfile for Ogg/Opus, the downmix and the libsoxr resampler) and
 * checks the contract: success
 * gives a non-empty buffer of finite samples, failure gives a negative
 * code, no buffer and a message.  The same bytes are then read as raw
 * s16le with a rate and channel count taken from the first two bytes, to
 * cover sotto_audio_from_s16le.  Seeds: fuzz/seeds/audio (tiny WAV, FLAC,
 * Ogg Vorbis, AIFF and AU files in several formats, rates and layouts, and
 * Ogg/Opus: mono at 8 and 16 kHz, stereo at 48 kHz, a chained stream whose
 * links differ in channel count, and a stream cut inside its audio page).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sotto.h"

/*
 * Known leak in libsndfile 1.2.0 itself, not in sotto: when an Ogg stream's
 * first packet says Vorbis but the Vorbis headers are then broken or cut
 * short, ogg_vorbis_open() returns before it installs vorbis_close(), so
 * sf_open_virtual() fails without freeing what vorbis_info_init() and
 * vorbis_synthesis_headerin() allocated (about 6 KB per such input).
 * Every leak sotto itself could cause (a missing sf_close, a buffer of
 * ours) has a different allocation stack and is still reported.
 *
 * Known leak in libopusfile 0.12 itself: when a chained stream's later
 * link has valid headers but then fails op_find_initial_pcm_offset() (e.g.
 * OP_EBADTIMESTAMP), op_bisect_forward_serialno() returns before it counts
 * that link, so op_open_*() fails without freeing the link's OpusTags.
 * Debian's libopusfile has no symbols and no frame pointers, so the stack
 * holds nothing but the library: the whole library is suppressed here.  A
 * missing op_free() of ours would hide behind this too; the sanitized
 * tests/audio run (no suppressions) covers every op_free() path instead.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:vorbis_info_init\n"
           "leak:libopusfile.so\n";
}

static void check(int rc, float *pcm, size_t n, const char *err)
{
    size_t i;

    if (rc == SOTTO_OK) {
        if (pcm == NULL || n == 0)
            __builtin_trap();
        for (i = 0; i < n; i++)
            if (!isfinite(pcm[i]))
                __builtin_trap();
    } else {
        if (rc > 0 || rc < SOTTO_EINTERNAL || rc == SOTTO_EINTERNAL ||
            pcm != NULL || n != 0 || err[0] == '\0')
            __builtin_trap();
    }
    sotto_pcm_free(pcm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int rates[8] = {8000, 11025, 16000, 22050, 44100, 48000,
                                 96000, 999};
    float *pcm = (float *)1;
    size_t n = 1;
    char err[256];
    int rc;

    err[0] = '\0';
    rc = sotto_audio_decode_memory(data, size, &pcm, &n, err, sizeof err);
    check(rc, pcm, n, err);

    if (size >= 2) {
        pcm = (float *)1;
        n = 1;
        err[0] = '\0';
        rc = sotto_audio_from_s16le(data + 2, size - 2, rates[data[0] & 7],
                                    1 + data[1] % 4, &pcm, &n, err,
                                    sizeof err);
        check(rc, pcm, n, err);
    }
    return 0;
}
