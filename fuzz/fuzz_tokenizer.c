/*
 * fuzz_tokenizer.c - libFuzzer target for the tokenizer loader.
 *
 * Contract: each input is written, in a fresh temporary folder, as
 * tokenizer.json, then as vocabulary.json, then as vocabulary.txt, and
 * loaded with sotto__tokenizer_create().  A load must either fail with a
 * negative code or give a tokenizer whose every id has a string that find()
 * maps back to the same string, whose decode() output is valid UTF-8 (so
 * encode() accepts it), and whose encode() counts agree whatever the room
 * given.  Crashes, sanitizer reports and failed invariants (abort) are
 * bugs.  Seeds: fuzz/seeds/tokenizer/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "engine/tokenizer.h"

#define N_VOCAB 320
#define MAX_IDS 256

static void require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_tokenizer: invariant failed: %s\n", what);
        abort();
    }
}

/* Encodes text (which may be invalid UTF-8) and checks the invariants. */
static void exercise_encode(const sotto__tokenizer *tok, const char *text)
{
    int ids[MAX_IDS];
    int n = sotto__tokenizer_encode(tok, text, ids, MAX_IDS);
    int n0 = sotto__tokenizer_encode(tok, text, NULL, 0);

    require(n == n0, "encode count depends on cap");
    if (!sotto__tokenizer_can_encode(tok)) {
        require(n == SOTTO_EUNSUPPORTED, "encode without merges");
        return;
    }
    require(n >= 0 || n == SOTTO_EINVAL, "encode error code");
    for (int i = 0; i < n && i < MAX_IDS; i++)
        require(ids[i] >= 0 && ids[i] < N_VOCAB, "encode id in range");
}

static void exercise(const sotto__tokenizer *tok, const uint8_t *data,
                     size_t size)
{
    static const char *const texts[] = {
        "Hello world",
        " don't  stop\n\n\tnow ",
        "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80 1,000!",
        "<|endoftext|>a<|0.00|>",
        "",
    };
    unsigned char bytes[SOTTO__MAX_TOKEN_BYTES];
    int ids[MAX_IDS], n = 0, eot, len;
    char out[4 * MAX_IDS * 8];
    char *text;

    require(sotto__tokenizer_n_vocab(tok) == N_VOCAB, "n_vocab");
    for (int id = 0; id < N_VOCAB; id++) {
        const char *s = sotto__tokenizer_token(tok, id);
        int other;
        require(s != NULL && strlen(s) <= SOTTO__MAX_TOKEN_BYTES,
                "token string");
        other = sotto__tokenizer_find(tok, s);
        require(other >= 0 && other <= id &&
                strcmp(sotto__tokenizer_token(tok, other), s) == 0,
                "find(token(id))");
        len = sotto__tokenizer_token_bytes(tok, id, bytes, sizeof bytes);
        require(len >= 0 && (size_t)len <= strlen(s), "token_bytes");
    }

    eot = sotto__tokenizer_find(tok, "<|endoftext|>");
    if (eot < 0)
        eot = N_VOCAB;
    for (size_t i = 0; i + 1 < size && n < MAX_IDS; i += 2)
        ids[n++] = (data[i] | data[i + 1] << 8) % N_VOCAB;
    len = sotto__tokenizer_decode(tok, ids, n, eot, out, sizeof out);
    require(len >= 0, "decode");
    require(sotto__tokenizer_decode(tok, ids, n, eot, NULL, 0) == len,
            "decode length without room");
    if ((size_t)len < sizeof out) {
        require(strlen(out) <= (size_t)len, "decode NUL");
        if (sotto__tokenizer_can_encode(tok))
            require(sotto__tokenizer_encode(tok, out, NULL, 0) >= 0,
                    "decode output is valid UTF-8");
    }

    for (size_t i = 0; i < SOTTO__ARRAY_LEN(texts); i++)
        exercise_encode(tok, texts[i]);
    text = malloc(size + 1);
    if (text != NULL) {
        memcpy(text, data, size);
        text[size] = 0;
        exercise_encode(tok, text);
        free(text);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[3] = {
        "tokenizer.json", "vocabulary.json", "vocabulary.txt"
    };
    /* Memory-backed /dev/shm keeps the file churn cheap where it exists. */
    char dir[] = "/dev/shm/sotto_fuzz_tok_XXXXXX";
    char path[sizeof dir + 32];

    if (mkdtemp(dir) == NULL) {
        snprintf(dir, sizeof dir, "/tmp/sotto_fuzz_tok_XXXXXX");
        if (mkdtemp(dir) == NULL)
            return 0;
    }
    for (int k = 0; k < 3; k++) {
        sotto__tokenizer *tok = NULL;
        char err[256];
        FILE *f;
        int rc;

        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        f = fopen(path, "wb");
        if (f == NULL)
            break;
        if (fwrite(data, 1, size, f) != size) {
            fclose(f);
            unlink(path);
            break;
        }
        fclose(f);
        rc = sotto__tokenizer_create(dir, N_VOCAB, &tok, err, sizeof err);
        require(rc <= 0, "create return code");
        require((rc == 0) == (tok != NULL), "create output");
        if (rc == 0) {
            exercise(tok, data, size);
            sotto__tokenizer_destroy(tok);
        } else {
            require(memchr(err, 0, sizeof err) != NULL && err[0] != 0,
                    "create error message");
        }
        unlink(path);
    }
    rmdir(dir);
    return 0;
}
