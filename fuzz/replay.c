/*
 * replay.c - runs a libFuzzer target's entry point once on each file named
 * on the command line (or in a directory named there), without libFuzzer:
 * `make test` builds every fuzz/fuzz_*.c with this main and the test build's
 * compiler and sanitizers, and replays its seeds, among them every input
 * that ever crashed a target (fuzz/seeds/<target>/crash-*), so a fixed
 * crash stays fixed.  A crash, sanitizer report or abort() fails the run;
 * so does an unreadable file or an empty directory.
 */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Largest input replayed (libFuzzer's default -max_len is far below). */
#define REPLAY_MAX_INPUT (16u << 20)

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    int rc = -1;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        (size_t)n > REPLAY_MAX_INPUT || fseek(f, 0, SEEK_SET) != 0)
        goto fail;
    /* One byte more than needed, so that an empty input has a buffer. */
    if ((buf = malloc((size_t)n + 1)) == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
        goto fail;
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    rc = 0;
fail:
    if (rc != 0)
        fprintf(stderr, "replay: cannot read %s\n", path);
    free(buf);
    if (f != NULL)
        fclose(f);
    return rc;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv)
{
    int total = 0;

    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        struct dirent **names;
        int n;

        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: no such file or directory: %s\n", argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (replay_file(argv[i]) != 0)
                return 1;
            total++;
            continue;
        }
        if ((n = scandir(argv[i], &names, NULL, by_name)) < 0)
            return 1;
        for (int k = 0; k < n; k++) {
            char path[4096];
            if (names[k]->d_name[0] != '.') {
                snprintf(path, sizeof path, "%s/%s", argv[i], names[k]->d_name);
                if (replay_file(path) != 0)
                    return 1;
                total++;
            }
            free(names[k]);
        }
        free(names);
    }
    if (total == 0) {
        fprintf(stderr, "replay: no inputs\n");
        return 1;
    }
    printf("%s: replayed %d inputs\n", argv[0], total);
    return 0;
}
