/*
 * worker_stubs.c - no-op stand-ins for the server functions that
 * src/server/worker.c calls outside the parts the fuzz targets drive (the
 * log, the crash records, the clock), so that fuzz_ipc and fuzz_opus link
 * worker.o without the rest of the server.  Not a fuzz target itself: the
 * Makefile links it into those two.
 */
#include <stdint.h>

#include "server/server.h"

void sotto__log_init(const char *role, int level)
{
    (void)role;
    (void)level;
}

void sotto__log(int level, uint32_t stream, const char *fmt, ...)
{
    (void)level;
    (void)stream;
    (void)fmt;
}

void sotto__crash_install(const char *state_dir, const char *role)
{
    (void)state_dir;
    (void)role;
}

void sotto__crash_set_streams(const uint32_t *ids, int n)
{
    (void)ids;
    (void)n;
}

double sotto__now(void)
{
    return 0.0;
}

