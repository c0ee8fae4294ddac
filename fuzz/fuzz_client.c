/*
 * fuzz_client.c - libFuzzer target for what `sotto stream` reads from the
 * server: the WebSocket protocol's JSON events and the raw TCP protocol's
 * lines (src/client/stream_proto.c).
 *
 * Contract: each input is parsed as an event by sotto_cli_event_parse(),
 * which must return 0 or -1; on 0 the event's kind is one of the enum's,
 * its times are finite and in [0, SOTTO_CLI_MAX_TIME_S], the text copy is
 * NUL-terminated within its capacity and holds no control character, and
 * sotto_cli_event_json() gives a string or NULL.  The input, cut at its
 * first NUL, is then parsed as a TCP line by sotto_cli_line_parse(), with
 * the same invariants on success.  Crashes, sanitizer reports, leaks and
 * failed invariants (abort) are bugs.
 *
 * Seeds: fuzz/seeds/client/ (events and lines as the server sends them):
 *   ./build-fuzz/fuzz_client fuzz/corpus-fuzz_client fuzz/seeds/client
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/stream_client.h"

static void require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_client: invariant failed: %s\n", what);
        abort();
    }
}

static void check_text(const char *text, size_t cap)
{
    size_t n = strnlen(text, cap);
    require(n < cap, "text NUL-terminated within its capacity");
    for (size_t i = 0; i < n; i++)
        require((unsigned char)text[i] >= 0x20 && text[i] != 0x7f,
                "no control character in printable text");
}

static void check_time(double t)
{
    require(isfinite(t) && t >= 0.0 && t <= SOTTO_CLI_MAX_TIME_S, "time in range");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[64], *line, *json;
    sotto_cli_event ev;
    double a, b;

    if (sotto_cli_event_parse((const char *)data, size, &ev, text, sizeof text) == 0) {
        require(ev.kind >= SOTTO_CLI_EV_OTHER && ev.kind <= SOTTO_CLI_EV_ERROR, "kind");
        require(ev.json != NULL, "json kept");
        check_time(ev.start);
        check_time(ev.end);
        check_text(text, sizeof text);
        json = sotto_cli_event_json(&ev, 12.5);
        cJSON_free(json);
        sotto_cli_event_clear(&ev);
    }
    line = malloc(size + 1);
    if (line == NULL)
        return 0;
    memcpy(line, data, size);
    line[size] = '\0';
    if (sotto_cli_line_parse(line, &a, &b, text, sizeof text) == 0) {
        check_time(a);
        check_time(b);
        check_text(text, sizeof text);
    }
    free(line);
    return 0;
}
