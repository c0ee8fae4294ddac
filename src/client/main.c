/*
 * main.c - the sotto command-line tool.
 *
 *   sotto transcribe [options] FILE|-     offline transcription
 *   sotto model fetch|path|list [NAME]    model management (model_cmd.c)
 *   sotto serve [options]                 the streaming server (src/server)
 *   sotto stream [options] FILE|-|mic     the streaming client (stream_*.c)
 *   sotto version
 *
 * The tool uses only the public API in include/sotto.h.  Exit codes: 0 on
 * success, 1 for runtime, model or network failures, 2 for bad usage or
 * bad input (not audio, empty, truncated, NaN/Inf, too long), each with a
 * one-line message on stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/client.h"
#include "client/stream_client.h"
#include "server/server.h"

/* Largest input read from stdin: the longest allowed audio as s16 stereo
 * at 48 kHz, plus room for a container header. */
#define MAX_STDIN_BYTES ((size_t)SOTTO_MAX_AUDIO_SECONDS * 48000 * 2 * 2 + (1 << 20))

static void log_stderr(void *user, int level, const char *msg)
{
    int verbose = *(const int *)user;
    static const char *names[] = { "error", "warning", "info", "debug" };
    if (level <= SOTTO_LOG_WARN || verbose)
        fprintf(stderr, "sotto: %s: %s\n", names[level & 3], msg);
}

static void transcribe_usage(FILE *f)
{
    fprintf(f,
        "usage: sotto transcribe [options] FILE|-\n"
        "  -m, --model DIR|NAME      model folder or installed name (default tiny.en)\n"
        "  -t, --threads N           inference threads (default: all cores)\n"
        "  -f, --format FMT          text | json | srt | vtt (default text)\n"
        "  -b, --beam-size N         1 = greedy (default 5)\n"
        "      --best-of N           candidates when sampling (default 5)\n"
        "      --temperature T[,T..] fallback temperatures (default 0,0.2,...,1)\n"
        "      --no-fallback         decode at temperature 0 only\n"
        "  -p, --initial-prompt TXT  text that conditions the first window\n"
        "  -l, --language CODE       language (multilingual models; default detect)\n"
        "      --word-timestamps     add word-level timestamps\n"
        "      --without-timestamps  decode without timestamp tokens\n"
        "      --no-condition        do not condition on previous text\n"
        "      --raw                 stdin/file is raw s16le PCM (with --rate)\n"
        "      --rate N              sample rate of --raw input\n"
        "      --channels N          channels of --raw input (default 1)\n"
        "  -v, --verbose             log model loading and progress\n"
        "streaming simulation:\n"
        "      --stream              play FILE through the streaming API on a\n"
        "                            simulated real-time clock; print events\n"
        "      --chunk-ms N          audio arrives in chunks of N ms (default 1000)\n"
        "      --min-chunk S         seconds of new audio between passes (default 1)\n"
        "      --vad-model FILE      Silero VAD weights (default: installed silero-vad)\n"
        "      --no-vad              transcribe everything, without the VAD gate\n"
        "      --full-window         encode the buffer padded to 30 s\n"
        "      --no-force-committed  decode committed words again every pass\n"
        "      --buffer-trim S       trim the buffer past S seconds (default 15)\n"
        "  (with --stream, -f json prints one JSON object per event; -b defaults to 1)\n");
}

/* Reads a whole stream into memory, up to limit bytes. */
static int read_all(FILE *f, size_t limit, unsigned char **out, size_t *len)
{
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;

    for (;;) {
        size_t got;
        if (n == cap) {
            unsigned char *nb;
            if (cap >= limit) {
                free(buf);
                return -2;
            }
            cap = cap ? cap * 2 : (1 << 20);
            if (cap > limit)
                cap = limit;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                return -1;
            }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

static int parse_temperatures(const char *s, sotto_transcribe_params *p)
{
    char *end;
    p->n_temperatures = 0;
    while (*s) {
        float t = strtof(s, &end);
        if (end == s || t < 0.0f || t > 2.0f ||
            p->n_temperatures == SOTTO_MAX_TEMPERATURES)
            return -1;
        p->temperatures[p->n_temperatures++] = t;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return p->n_temperatures > 0 ? 0 : -1;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

int sotto_cli_vad_path(char *buf, size_t cap)
{
    char dir[PATH_MAX];
    if (sotto_cli_models_dir(dir, sizeof dir) != 0)
        return -1;
    return (size_t)snprintf(buf, cap, "%s/silero-vad/silero_vad_16k.safetensors",
                            dir) < cap ? 0 : -1;
}

/* Maps a decoding error to an exit code: the input's fault is 2. */
static int exit_for(int rc)
{
    switch (rc) {
    case SOTTO_EAUDIO: case SOTTO_EEMPTY: case SOTTO_ENONFINITE:
    case SOTTO_ETOOLONG: case SOTTO_EINVAL: case SOTTO_EIO:
        return SOTTO_EXIT_USAGE;
    default:
        return SOTTO_EXIT_FAIL;
    }
}

static int transcribe_main(int argc, char **argv)
{
    enum { OPT_BEST_OF = 256, OPT_TEMP, OPT_NO_FALLBACK, OPT_WORDS, OPT_NO_TS,
           OPT_NO_COND, OPT_RAW, OPT_RATE, OPT_CHANNELS, OPT_STREAM,
           OPT_CHUNK_MS, OPT_MIN_CHUNK, OPT_VAD_MODEL, OPT_NO_VAD,
           OPT_FULL_WINDOW, OPT_BUFFER_TRIM, OPT_NO_FORCE };
    static const struct option opts[] = {
        { "model", required_argument, NULL, 'm' },
        { "threads", required_argument, NULL, 't' },
        { "format", required_argument, NULL, 'f' },
        { "beam-size", required_argument, NULL, 'b' },
        { "best-of", required_argument, NULL, OPT_BEST_OF },
        { "temperature", required_argument, NULL, OPT_TEMP },
        { "no-fallback", no_argument, NULL, OPT_NO_FALLBACK },
        { "initial-prompt", required_argument, NULL, 'p' },
        { "language", required_argument, NULL, 'l' },
        { "word-timestamps", no_argument, NULL, OPT_WORDS },
        { "without-timestamps", no_argument, NULL, OPT_NO_TS },
        { "no-condition", no_argument, NULL, OPT_NO_COND },
        { "raw", no_argument, NULL, OPT_RAW },
        { "rate", required_argument, NULL, OPT_RATE },
        { "channels", required_argument, NULL, OPT_CHANNELS },
        { "stream", no_argument, NULL, OPT_STREAM },
        { "chunk-ms", required_argument, NULL, OPT_CHUNK_MS },
        { "min-chunk", required_argument, NULL, OPT_MIN_CHUNK },
        { "vad-model", required_argument, NULL, OPT_VAD_MODEL },
        { "no-vad", no_argument, NULL, OPT_NO_VAD },
        { "full-window", no_argument, NULL, OPT_FULL_WINDOW },
        { "no-force-committed", no_argument, NULL, OPT_NO_FORCE },
        { "buffer-trim", required_argument, NULL, OPT_BUFFER_TRIM },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    sotto_transcribe_params tp = sotto_transcribe_default_params();
    sotto_model_params mp = sotto_model_default_params();
    enum sotto_cli_format fmt = SOTTO_CLI_TEXT;
    const char *model_arg = "tiny.en", *input;
    char model_dir[PATH_MAX], err[1024] = "";
    int raw = 0, rate = 0, channels = 1, verbose = 0, c, rc, status;
    int stream = 0, beam_given = 0, no_vad = 0;
    sotto_stream_params sp = sotto_stream_default_params();
    sotto_cli_sim_opts so = { 1000, 0 };
    const char *vad_arg = NULL;
    char vad_path[PATH_MAX];
    sotto_model *model = NULL;
    sotto_result *result = NULL;
    float *pcm = NULL;
    size_t n = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "m:t:f:b:p:l:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_arg = optarg; break;
        case 't':
            if (parse_int(optarg, 1, 1024, &mp.n_threads) != 0)
                goto bad_value;
            break;
        case 'f':
            if (strcmp(optarg, "text") == 0) fmt = SOTTO_CLI_TEXT;
            else if (strcmp(optarg, "json") == 0) fmt = SOTTO_CLI_JSON;
            else if (strcmp(optarg, "srt") == 0) fmt = SOTTO_CLI_SRT;
            else if (strcmp(optarg, "vtt") == 0) fmt = SOTTO_CLI_VTT;
            else goto bad_value;
            break;
        case 'b':
            if (parse_int(optarg, 1, 16, &tp.beam_size) != 0)
                goto bad_value;
            beam_given = 1;
            break;
        case OPT_BEST_OF:
            if (parse_int(optarg, 1, 16, &tp.best_of) != 0)
                goto bad_value;
            break;
        case OPT_TEMP:
            if (parse_temperatures(optarg, &tp) != 0)
                goto bad_value;
            break;
        case OPT_NO_FALLBACK:
            tp.temperatures[0] = 0.0f;
            tp.n_temperatures = 1;
            break;
        case 'p': tp.initial_prompt = optarg; break;
        case 'l': tp.language = optarg; break;
        case OPT_WORDS: tp.word_timestamps = 1; break;
        case OPT_NO_TS: tp.without_timestamps = 1; break;
        case OPT_NO_COND: tp.condition_on_previous_text = 0; break;
        case OPT_RAW: raw = 1; break;
        case OPT_RATE:
            if (parse_int(optarg, 1000, 384000, &rate) != 0)
                goto bad_value;
            break;
        case OPT_CHANNELS:
            if (parse_int(optarg, 1, 64, &channels) != 0)
                goto bad_value;
            break;
        case OPT_STREAM: stream = 1; break;
        case OPT_CHUNK_MS:
            if (parse_int(optarg, 10, 10000, &so.chunk_ms) != 0)
                goto bad_value;
            break;
        case OPT_MIN_CHUNK: {
            char *end;
            sp.min_chunk = strtof(optarg, &end);
            if (end == optarg || *end || !(sp.min_chunk >= 0.1f && sp.min_chunk <= 5.0f))
                goto bad_value;
            if (sp.first_chunk > sp.min_chunk)
                sp.first_chunk = sp.min_chunk;
            break;
        }
        case OPT_BUFFER_TRIM: {
            char *end;
            sp.buffer_trim = strtof(optarg, &end);
            if (end == optarg || *end || !(sp.buffer_trim >= 2.0f && sp.buffer_trim <= 20.0f))
                goto bad_value;
            break;
        }
        case OPT_VAD_MODEL: vad_arg = optarg; break;
        case OPT_NO_VAD: no_vad = 1; break;
        case OPT_FULL_WINDOW: sp.encode_full_window = 1; break;
        case OPT_NO_FORCE: sp.force_committed = 0; break;
        case 'v': verbose = 1; break;
        case 'h': transcribe_usage(stdout); return SOTTO_EXIT_OK;
        default: transcribe_usage(stderr); return SOTTO_EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        transcribe_usage(stderr);
        return SOTTO_EXIT_USAGE;
    }
    input = argv[optind];
    if (raw && rate == 0) {
        fprintf(stderr, "sotto: --raw needs --rate\n");
        return SOTTO_EXIT_USAGE;
    }

    /* Decode the input first: bad input is reported before the model is
     * loaded. */
    if (raw || strcmp(input, "-") == 0) {
        FILE *f = strcmp(input, "-") == 0 ? stdin : fopen(input, "rb");
        unsigned char *data = NULL;
        size_t len = 0;
        int r;
        struct stat st;
        if (f == NULL) {
            fprintf(stderr, "sotto: cannot open %s: %s\n", input, strerror(errno));
            return SOTTO_EXIT_USAGE;
        }
        /* A file (or stdin redirected from one) over the limit is refused
         * by its size, before gigabytes are read; a pipe is cut off by
         * read_all at the same limit. */
        if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) &&
            (uintmax_t)st.st_size > MAX_STDIN_BYTES)
            r = -2;
        else
            r = read_all(f, MAX_STDIN_BYTES, &data, &len);
        if (f != stdin)
            fclose(f);
        if (r != 0) {
            fprintf(stderr, "sotto: %s: %s\n", input,
                    r == -2 ? "input is larger than the length limit"
                            : "read error");
            return SOTTO_EXIT_USAGE;
        }
        rc = raw ? sotto_audio_from_s16le(data, len, rate, channels, &pcm, &n,
                                          err, sizeof err)
                 : sotto_audio_decode_memory(data, len, &pcm, &n, err, sizeof err);
        free(data);
    } else {
        rc = sotto_audio_decode_file(input, &pcm, &n, err, sizeof err);
    }
    if (rc != 0) {
        /* Anything wrong with the input itself is the user's input: exit
         * 2, even an unsupported rate or channel count. */
        int code = rc == SOTTO_ENOMEM || rc == SOTTO_EINTERNAL
                       ? SOTTO_EXIT_FAIL : SOTTO_EXIT_USAGE;
        /* File errors from the library already name the file. */
        if (err[0] && strstr(err, input) != NULL)
            fprintf(stderr, "sotto: %s\n", err);
        else
            fprintf(stderr, "sotto: %s: %s\n", input, err[0] ? err : sotto_strerror(rc));
        return code;
    }

    if (sotto_cli_resolve_model(model_arg, model_dir, sizeof model_dir) != 0) {
        sotto_pcm_free(pcm);
        return SOTTO_EXIT_FAIL;
    }
    mp.log = log_stderr;
    mp.log_user = &verbose;
    if (stream && !no_vad) {
        if (vad_arg == NULL) {
            if (sotto_cli_vad_path(vad_path, sizeof vad_path) != 0 ||
                access(vad_path, R_OK) != 0) {
                fprintf(stderr, "sotto: the VAD weights are not installed "
                        "(%s); run 'sotto model fetch silero-vad', or pass "
                        "--vad-model FILE or --no-vad\n", vad_path);
                sotto_pcm_free(pcm);
                return SOTTO_EXIT_FAIL;
            }
            vad_arg = vad_path;
        }
        mp.vad_path = vad_arg;
    }
    rc = sotto_model_create(model_dir, &mp, &model, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "sotto: cannot load model %s: %s\n", model_dir, err);
        sotto_pcm_free(pcm);
        return SOTTO_EXIT_FAIL;
    }
    if (stream) {
        /* Streaming decodes greedily unless a beam was asked for. */
        if (!beam_given)
            tp.beam_size = 1;
        tp.word_timestamps = 1;
        sp.decode = tp;
        sp.vad = !no_vad;
        so.json = fmt == SOTTO_CLI_JSON;
        status = sotto_cli_simulate(model, pcm, n, &sp, &so);
        sotto_pcm_free(pcm);
        sotto_model_destroy(model);
        return status;
    }
    rc = sotto_transcribe(model, pcm, n, &tp, &result, err, sizeof err);
    sotto_pcm_free(pcm);
    if (rc != 0) {
        fprintf(stderr, "sotto: %s: %s\n", input, err[0] ? err : sotto_strerror(rc));
        sotto_model_destroy(model);
        return exit_for(rc);
    }
    status = SOTTO_EXIT_OK;
    if (sotto_cli_write(stdout, result, fmt) != 0) {
        fprintf(stderr, "sotto: cannot write the output: %s\n", strerror(errno));
        status = SOTTO_EXIT_FAIL;
    }
    sotto_result_destroy(result);
    sotto_model_destroy(model);
    return status;

bad_value:
    fprintf(stderr, "sotto: bad value \"%s\" for an option\n", optarg);
    transcribe_usage(stderr);
    return SOTTO_EXIT_USAGE;
}

static void usage(FILE *f)
{
    fprintf(f,
        "sotto %s - Whisper speech-to-text in C\n"
        "usage: sotto transcribe [options] FILE|-   transcribe a recording\n"
        "       sotto model fetch [NAME]            download a model (default tiny.en)\n"
        "       sotto model path|list               where models live, which are known\n"
        "       sotto serve [--config FILE] [--KEY VALUE ...]  run the streaming server\n"
        "       sotto stream [options] FILE|-|mic   stream audio to a server, print text live\n"
        "       sotto version\n"
        "Run 'sotto transcribe --help' for the transcription options.\n",
        SOTTO_VERSION);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return SOTTO_EXIT_USAGE;
    }
    if (strcmp(argv[1], "transcribe") == 0)
        return transcribe_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "model") == 0)
        return sotto_cli_model_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "serve") == 0) {
        /* The workers are forked from this process, and libgomp reads
         * OMP_WAIT_POLICY once, when it is loaded: set it, then start
         * again, so that idle OpenMP threads of one worker sleep instead of
         * spinning on the cores the other workers need. */
        if (getenv("OMP_WAIT_POLICY") == NULL) {
            setenv("OMP_WAIT_POLICY", "passive", 1);
            execv("/proc/self/exe", argv);
            /* Without /proc, carry on with the default policy. */
        }
        return sotto__serve_main(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "stream") == 0)
        return sotto_cli_stream_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("sotto %s\n", SOTTO_VERSION);
        return SOTTO_EXIT_OK;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return SOTTO_EXIT_OK;
    }
    fprintf(stderr, "sotto: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return SOTTO_EXIT_USAGE;
}
