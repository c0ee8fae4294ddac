# sotto - build.  Targets:
#   make                        build libsotto.a and the sotto tool (-Werror)
#   make test                   unit tests, then end-to-end tests on the real model
#   make bench                  sotto against faster-whisper (see bench/README.md)
#   make fuzz                   build the libFuzzer targets and run each briefly
#   make chaos                  the fault-injection suite (30 min; CHAOS_SECONDS)
#   make SANITIZE=address,undefined [test]   the same under sanitizers
# Sanitized builds live in their own build directory, so they never mix
# objects with the plain build.

CC      ?= cc
comma   := ,
SANITIZE ?=
BUILD   ?= build$(if $(SANITIZE),-$(subst $(comma),-,$(SANITIZE)))

PKGS    := libcjson sndfile soxr fftw3f libpcre2-8 zlib opusfile
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))
# OpenBLAS's OpenMP build, so that its threads and the engine's own OpenMP
# loops share one thread pool instead of oversubscribing the cores.  The
# rpath makes the OpenMP variant win over the pthread one at run time
# whatever Debian's alternatives select.
BLAS_DIR   ?= /usr/lib/x86_64-linux-gnu/openblas-openmp
BLAS_INC   ?= /usr/include/x86_64-linux-gnu/openblas-openmp
PKG_CFLAGS += -I$(BLAS_INC)
PKG_LIBS   += -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas
# `sotto serve` (src/server) is part of the tool, not of libsotto: only its
# objects see these flags, and only the tool and the server tests link them.
SERVER_PKGS   := libwebsockets inih opus libseccomp
SERVER_CFLAGS := $(shell pkg-config --cflags $(SERVER_PKGS))
SERVER_LIBS   := $(shell pkg-config --libs $(SERVER_PKGS))
# `sotto stream` (src/client/stream_*.c) talks to the server through
# libwebsockets, encodes Opus and captures the microphone through ALSA.
CLIENT_PKGS   := libwebsockets opus alsa
CLIENT_CFLAGS := $(shell pkg-config --cflags $(CLIENT_PKGS))
CLIENT_LIBS   := $(shell pkg-config --libs $(CLIENT_PKGS))

OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
           -Wno-unused-parameter -fno-strict-aliasing -fopenmp \
           -Iinclude -Isrc $(PKG_CFLAGS)
LDLIBS  += $(PKG_LIBS) -lzip -lcrypto -lm -lpthread -fopenmp

# clang (the TSan build) warns where a "#pragma omp simd" loop was not
# vectorized; that is a missed optimization, not a defect.
ifneq ($(findstring clang,$(CC)),)
CFLAGS  += -Wno-pass-failed
endif

ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif

# The workers' fault injection (SOTTO_FAULT=crash-after:N|hang-after:N, see
# src/server/worker.c) exists only in test builds: the sanitized builds have
# it by default, release builds never unless FAULT_INJECTION=1 is given.
FAULT_INJECTION ?= $(if $(SANITIZE),1,)
ifneq ($(FAULT_INJECTION),)
CFLAGS  += -DSOTTO_FAULT_INJECTION
endif

LIB_SRC  := $(sort $(wildcard src/common/*.c src/engine/*.c src/stream/*.c src/audio/*.c))
CLI_SRC  := $(sort $(wildcard src/client/*.c))
SERVER_SRC := $(sort $(wildcard src/server/*.c))
TEST_SRC := $(sort $(wildcard tests/*/test_*.c))
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:%.c=$(BUILD)/%)
DEPS     := $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(SERVER_OBJ:.o=.d) $(TEST_BIN:=.d)

.SECONDARY:
.PHONY: all test unit-test e2e-test bench fuzz chaos soak tsan clean
all: $(BUILD)/sotto $(BUILD)/libsotto.a

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libsotto.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(SERVER_OBJ): CFLAGS += $(SERVER_CFLAGS)
$(CLI_OBJ): CFLAGS += $(CLIENT_CFLAGS)
# The captions page goes into web.o by the assembler's .incbin (see
# src/server/web.c), which the compiler's dependency files do not record.
$(BUILD)/src/server/web.o: src/server/web/index.html

# The server's objects in an archive, so that a server test pulls in only
# the objects it uses (not the gateway or the workers).
$(BUILD)/libsotto_server.a: $(SERVER_OBJ)
	@rm -f $@
	ar rcs $@ $^

# -rdynamic puts the program's global functions in its dynamic symbol
# table, so that a crash record's backtrace (src/server/crash.c) names
# them; file-local functions still show as sotto(+OFFSET), which
# `addr2line -f -e build/sotto OFFSET` resolves.
$(BUILD)/sotto: $(CLI_OBJ) $(SERVER_OBJ) $(BUILD)/libsotto.a
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(SERVER_LIBS) $(CLIENT_LIBS) $(LDLIBS)

# Every tests/<part>/test_<name>.c is one program linked against libsotto.
$(BUILD)/tests/%: tests/%.c $(BUILD)/libsotto.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -MMD -MP $(LDFLAGS) -o $@ $< $(BUILD)/libsotto.a $(LDLIBS)

# tests/server/test_<name>.c also link the server's objects they use.
$(BUILD)/tests/server/%: tests/server/%.c $(BUILD)/libsotto_server.a $(BUILD)/libsotto.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SERVER_CFLAGS) -Itests -MMD -MP $(LDFLAGS) -o $@ $< \
	    $(BUILD)/libsotto_server.a $(BUILD)/libsotto.a $(SERVER_LIBS) $(LDLIBS)

# Every fuzz target also builds with fuzz/replay.c as its main, with this
# build's compiler and sanitizers: `make test` runs it over the target's
# seeds, which keep every input that ever crashed it.  Targets that read
# server or client code link those objects too.
REPLAY_BIN := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)
$(BUILD)/fuzz/fuzz_ipc: REPLAY_EXTRA = $(BUILD)/src/server/ipc.o \
    $(BUILD)/src/server/worker.o $(BUILD)/src/server/privs.o fuzz/worker_stubs.c
$(BUILD)/fuzz/fuzz_ipc: $(BUILD)/src/server/ipc.o $(BUILD)/src/server/worker.o \
    $(BUILD)/src/server/privs.o fuzz/worker_stubs.c
$(BUILD)/fuzz/fuzz_opus: REPLAY_EXTRA = $(BUILD)/src/server/ipc.o \
    $(BUILD)/src/server/worker.o $(BUILD)/src/server/privs.o fuzz/worker_stubs.c
$(BUILD)/fuzz/fuzz_opus: $(BUILD)/src/server/ipc.o $(BUILD)/src/server/worker.o \
    $(BUILD)/src/server/privs.o fuzz/worker_stubs.c
$(BUILD)/fuzz/fuzz_client: REPLAY_EXTRA = $(BUILD)/src/client/stream_proto.o
$(BUILD)/fuzz/fuzz_client: $(BUILD)/src/client/stream_proto.o
$(BUILD)/fuzz/fuzz_dialect: REPLAY_EXTRA = $(BUILD)/src/server/dialect.o
$(BUILD)/fuzz/fuzz_dialect: $(BUILD)/src/server/dialect.o
$(BUILD)/fuzz/fuzz_gateway: REPLAY_EXTRA = $(BUILD)/libsotto_server.a
$(BUILD)/fuzz/fuzz_gateway: $(BUILD)/libsotto_server.a
$(BUILD)/fuzz/%: fuzz/%.c fuzz/replay.c $(BUILD)/libsotto.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SERVER_CFLAGS) $(LDFLAGS) -o $@ fuzz/$*.c fuzz/replay.c \
	    $(REPLAY_EXTRA) $(BUILD)/libsotto.a $(SERVER_LIBS) $(LDLIBS)

test: unit-test e2e-test

unit-test: $(TEST_BIN) $(BUILD)/sotto $(REPLAY_BIN)
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; SOTTO_BUILD=$(BUILD) ./$$t; done
	@set -e; for t in $(REPLAY_BIN); do n=$${t##*/}; echo "== $$t"; \
	  ./$$t fuzz/seeds/$${n#fuzz_}; done

e2e-test: $(BUILD)/sotto
	SOTTO_BUILD=$(BUILD) sh tests/run_e2e.sh

# The model defaults to the installed tiny.en; the shared audio to ../shared.
bench: all
	python3 bench/bench.py --sotto $(BUILD)/sotto \
	    --model "$${SOTTO_MODEL:-$$($(BUILD)/sotto model path tiny.en)}" \
	    --shared "$${SOTTO_SHARED:-../shared}"
	python3 bench/stream_bench.py --sotto $(BUILD)/sotto \
	    --model "$${SOTTO_MODEL:-$$($(BUILD)/sotto model path tiny.en)}" \
	    --shared "$${SOTTO_SHARED:-../shared}"
	python3 bench/serve_bench.py --sotto $(BUILD)/sotto \
	    --model "$${SOTTO_MODEL:-$$($(BUILD)/sotto model path tiny.en)}" \
	    --shared "$${SOTTO_SHARED:-../shared}"

# Load and soak (tests/server/soak.py): SOAK_SECONDS at SOAK_STREAMS
# concurrent real-time streams (the capacity bench/serve_bench.py measured
# on the 2-core machine), then SOAK_OVERLOAD seconds at twice that; the
# report goes to build/artifacts/soak-report.json.
SOAK_SECONDS  ?= 1800
SOAK_OVERLOAD ?= 300
SOAK_STREAMS  ?= 4
soak: all
	python3 tests/server/soak.py --sotto $(BUILD)/sotto \
	    --model "$${SOTTO_MODEL:-$$($(BUILD)/sotto model path tiny.en)}" \
	    --shared "$${SOTTO_SHARED:-../shared}" --duration $(SOAK_SECONDS) \
	    --overload $(SOAK_OVERLOAD) --streams $(SOAK_STREAMS) \
	    --report build/artifacts/soak-report.json

# ThreadSanitizer on the threaded parts, in a build of its own (clang, so
# that OpenMP is LLVM's libomp and its Archer tool tells TSan about the
# engine's parallel regions): the threading contract (test_threads: one
# model, two streams and an offline transcription at once, each on the
# OpenMP pool), the mel front end's parallel loops, a server (worker
# heartbeat and life threads), and `sotto stream` (its event loop, signal
# and source threads) against a plain server.  OpenBLAS itself is not instrumented;
# the client, which has no OpenMP, runs without ignore_noninstrumented_modules
# (with it, TSan misreads its threads' exits through uninstrumented
# libraries).
TSAN_ENV := TSAN_OPTIONS="halt_on_error=1 ignore_noninstrumented_modules=1" \
            OMP_TOOL_LIBRARIES=$$(ls /usr/lib/llvm-*/lib/libarcher.so | tail -1)
tsan:
	$(MAKE) SANITIZE=thread CC=clang BUILD=build-tsan build-tsan/sotto \
	    build-tsan/tests/stream/test_threads build-tsan/tests/engine/test_mel
	$(TSAN_ENV) SOTTO_BUILD=build-tsan build-tsan/tests/engine/test_mel
	$(TSAN_ENV) SOTTO_BUILD=build-tsan build-tsan/tests/stream/test_threads
	$(TSAN_ENV) python3 tests/server/test_serve.py --sotto build-tsan/sotto \
	    --model "$${SOTTO_MODEL:-$$(build-tsan/sotto model path tiny.en)}" \
	    --shared "$${SOTTO_SHARED:-../shared}" --quick --only b,g
	$(MAKE) build/sotto
	TSAN_OPTIONS=halt_on_error=1 python3 tests/client/test_stream.py \
	    --sotto build-tsan/sotto --server-sotto build/sotto \
	    --model "$${SOTTO_MODEL:-$$(build-tsan/sotto model path tiny.en)}" \
	    --shared "$${SOTTO_SHARED:-../shared}" --quick --only a

# The fault-injection suite (tests/server/chaos.py): a build with the
# workers' fault injection, a real server, CHAOS_CLIENTS clients and a
# seeded schedule of faults for CHAOS_SECONDS; the report goes to
# build/artifacts/chaos-report.json.  `make test` runs a quick version.
CHAOS_SECONDS ?= 1800
CHAOS_CLIENTS ?= 6
CHAOS_SEED    ?= 1
chaos:
	$(MAKE) BUILD=build-chaos FAULT_INJECTION=1 build-chaos/sotto
	python3 tests/server/chaos.py --sotto build-chaos/sotto \
	    --model "$${SOTTO_MODEL:-$$(build-chaos/sotto model path tiny.en)}" \
	    --shared "$${SOTTO_SHARED:-../shared}" --duration $(CHAOS_SECONDS) \
	    --clients $(CHAOS_CLIENTS) --seed $(CHAOS_SEED) \
	    --report build/artifacts/chaos-report.json

# libFuzzer targets are built with clang into build-fuzz, with ASan+UBSan.
FUZZ_CC      ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_SECONDS ?= 30
FUZZ_CFLAGS  := -O1 -g -std=c11 -D_GNU_SOURCE -Iinclude -Isrc $(PKG_CFLAGS) -fopenmp \
                -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_BIN     := $(FUZZ_SRC:fuzz/%.c=$(FUZZ_BUILD)/%)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lzip -lcrypto -lm -lpthread

fuzz: $(FUZZ_BIN)
	@set -e; for f in $(FUZZ_BIN); do n=$${f##*/}; mkdir -p fuzz/corpus-$$n; \
	  echo "== $$n ($(FUZZ_SECONDS) s)"; \
	  ./$$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 fuzz/corpus-$$n fuzz/seeds/$${n#fuzz_}; done

# fuzz_ipc (the server's channel reader and the worker's OPEN parser) and
# fuzz_opus (the worker's decoding of AUDIO payloads: raw Opus packets and
# split PCM) also link src/server/ipc.c, src/server/worker.c and
# src/server/privs.c (which worker.c calls), and worker.c needs libopus and
# privs.c libseccomp; fuzz/worker_stubs.c stubs the server's log and crash
# functions that worker.c calls, so no other server object is needed.
# These explicit rules take precedence over the fuzz_% pattern above.
FUZZ_WORKER := $(FUZZ_BUILD)/src/server/ipc.o $(FUZZ_BUILD)/src/server/worker.o \
               $(FUZZ_BUILD)/src/server/privs.o fuzz/worker_stubs.c
$(FUZZ_BUILD)/fuzz_ipc: fuzz/fuzz_ipc.c $(FUZZ_WORKER) $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lopus -lseccomp -lzip -lcrypto -lm -lpthread
$(FUZZ_BUILD)/fuzz_opus: fuzz/fuzz_opus.c $(FUZZ_WORKER) $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lopus -lseccomp -lzip -lcrypto -lm -lpthread

# fuzz_client (what sotto stream reads from the server) links the client's
# protocol parser, which needs only cJSON.
$(FUZZ_BUILD)/fuzz_client: fuzz/fuzz_client.c $(FUZZ_BUILD)/src/client/stream_proto.o \
                           $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lzip -lcrypto -lm -lpthread

# fuzz_dialect (the vosk, WhisperLive, Realtime and Wyoming message parsers
# and the REST form fields) links
# src/server/dialect.c, which needs cJSON and OpenSSL's base64.
$(FUZZ_BUILD)/fuzz_dialect: fuzz/fuzz_dialect.c $(FUZZ_BUILD)/src/server/dialect.o \
                            $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lzip -lcrypto -lm -lpthread

# fuzz_gateway drives the gateway's own code (every src/server object, from
# an archive so that only what it reaches is linked) around a real
# libwebsockets context.
FUZZ_SERVER_OBJ := $(SERVER_SRC:%.c=$(FUZZ_BUILD)/%.o)
$(FUZZ_SERVER_OBJ): FUZZ_CFLAGS += $(SERVER_CFLAGS)
$(FUZZ_BUILD)/libsotto_server.a: $(FUZZ_SERVER_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(FUZZ_BUILD)/fuzz_gateway: fuzz/fuzz_gateway.c $(FUZZ_BUILD)/libsotto_server.a \
                            $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(SERVER_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(SERVER_LIBS) \
	    $(PKG_LIBS) -lzip -lcrypto -lm -lpthread

clean:
	rm -rf build build-* 

-include $(DEPS)
