#!/bin/sh
# run_e2e.sh - the end-to-end half of `make test`: the real model on real
# audio.  Needs the model fetched (scripts/setup.sh does it) and the shared
# test audio beside the checkout (../shared) or at $SOTTO_SHARED.
set -eu

B=${SOTTO_BUILD:-build}
SOTTO=$B/sotto
SHARED=${SOTTO_SHARED:-../shared}
MODEL=${SOTTO_MODEL:-$($SOTTO model path tiny.en)}

if [ ! -f "$MODEL/model.bin" ]; then
    echo "run_e2e: no model in $MODEL; run scripts/setup.sh (or: $SOTTO model fetch tiny.en)" >&2
    exit 1
fi
if [ ! -d "$SHARED/audio" ]; then
    echo "run_e2e: no test audio in $SHARED/audio; set SOTTO_SHARED" >&2
    exit 1
fi

sh tests/client/test_cli.sh "$SOTTO" "$MODEL" "$SHARED"
python3 tests/golden/check_golden.py --sotto "$SOTTO" --model "$MODEL" --shared "$SHARED" --set greedy
python3 tests/golden/check_golden.py --sotto "$SOTTO" --model "$MODEL" --shared "$SHARED" --set beam5
python3 tests/golden/check_golden.py --sotto "$SOTTO" --model "$MODEL" --shared "$SHARED" --set words
# Sanitized builds (build-*) stream the long file in one chunk size only.
QUICK=
case "$B" in build-*) QUICK=--quick ;; esac
python3 tests/stream/check_stream.py --sotto "$SOTTO" --model "$MODEL" --shared "$SHARED" $QUICK
# The server: real processes on loopback with ephemeral ports.  Sanitized
# builds run the quick variant (shorter audio for the worker kill tests,
# 20 abrupt clients instead of 200).
python3 tests/server/test_serve.py --sotto "$SOTTO" --model "$MODEL" --shared "$SHARED" $QUICK
# The other servers' protocols (vosk, WhisperLive, OpenAI Realtime), each
# driven by its own client where one installs (scripts/setup.sh --test).
python3 tests/server/test_dialects.py --sotto "$SOTTO" --model "$MODEL" --shared "$SHARED" $QUICK
# The API key and TLS.
python3 tests/server/test_security.py --sotto "$SOTTO" --model "$MODEL" --shared "$SHARED" $QUICK
# Limits on what a client sends, at and just past each (docs/limits.md).
python3 tests/server/test_limits.py --sotto "$SOTTO" --model "$MODEL" --shared "$SHARED" $QUICK
# A quick run of the fault-injection suite (`make chaos` runs it for 30
# minutes); a build without fault injection skips the crash and hang
# inside inference.
python3 tests/server/chaos.py --sotto "$SOTTO" --model "$MODEL" --shared "$SHARED" --quick
# The client, `sotto stream`, against live servers.
python3 tests/client/test_stream.py --sotto "$SOTTO" --model "$MODEL" --shared "$SHARED" $QUICK
# The live captions page (/) in headless Chromium, with Debian's
# python3-selenium (hence /usr/bin/python3, not a python3 earlier on PATH);
# chromium and chromium-driver come with scripts/setup.sh --test.
/usr/bin/python3 tests/server/test_browser.py --sotto "$SOTTO" --model "$MODEL" --shared "$SHARED" $QUICK
