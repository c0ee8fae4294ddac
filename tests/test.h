/*
 * test.h - a minimal harness for the C unit tests.
 *
 * Each tests/<part>/test_<name>.c is one program.  CHECK() records a
 * failure with its location and carries on, so one run reports every
 * broken assertion; test_main_exit() turns the tally into the exit status.
 * Paths to the model and to ../shared come from the environment so that CI
 * and developers can point the tests elsewhere:
 *   SOTTO_MODEL   model folder (default $XDG_DATA_HOME/sotto/models/tiny.en)
 *   SOTTO_SHARED  shared test material (default ../shared)
 */
#ifndef SOTTO_TEST_H
#define SOTTO_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures;
static int test_checks;

#define CHECK(cond)                                                         \
    do {                                                                    \
        test_checks++;                                                      \
        if (!(cond)) {                                                      \
            test_failures++;                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,          \
                    __LINE__, #cond);                                       \
        }                                                                   \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                  \
    do {                                                                    \
        long long a_ = (long long)(a), b_ = (long long)(b);                 \
        test_checks++;                                                      \
        if (a_ != b_) {                                                     \
            test_failures++;                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n",\
                    __FILE__, __LINE__, #a, #b, a_, b_);                    \
        }                                                                   \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                  \
    do {                                                                    \
        const char *a_ = (a), *b_ = (b);                                    \
        test_checks++;                                                      \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {              \
            test_failures++;                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", \
                    __FILE__, __LINE__, #a, #b, a_ ? a_ : "(null)",         \
                    b_ ? b_ : "(null)");                                    \
        }                                                                   \
    } while (0)

static inline const char *test_shared_dir(void)
{
    const char *s = getenv("SOTTO_SHARED");
    return s && *s ? s : "../shared";
}

/* Returns the model folder the tests use; the buffer is static. */
static inline const char *test_model_dir(void)
{
    static char buf[4096];
    const char *m = getenv("SOTTO_MODEL");
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");

    if (m && *m)
        return m;
    if (xdg && *xdg)
        snprintf(buf, sizeof buf, "%s/sotto/models/tiny.en", xdg);
    else
        snprintf(buf, sizeof buf, "%s/.local/share/sotto/models/tiny.en",
                 home ? home : ".");
    return buf;
}

/* Reads a whole file; returns NULL on failure.  Free with free(). */
static inline void *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) {
        buf[n] = 0;
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

static inline int test_main_exit(const char *name)
{
    if (test_failures) {
        fprintf(stderr, "%s: %d of %d checks FAILED\n", name, test_failures,
                test_checks);
        return 1;
    }
    printf("%s: all %d checks passed\n", name, test_checks);
    return 0;
}

#endif
