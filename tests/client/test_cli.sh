#!/bin/sh
# test_cli.sh - end-to-end checks of the sotto tool on the real model:
# output formats, stdin input, and the exit code and message for every kind
# of bad input.  Usage: test_cli.sh SOTTO MODEL_DIR SHARED_DIR
set -u

SOTTO=$1
MODEL=$2
SHARED=$3
JFK=$SHARED/audio/jfk.wav
# The Ogg/Opus fixture, beside this script's folder (tests/data).
JFK_OPUS=$(dirname "$0")/../data/jfk.opus
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
pass() { echo "ok: $*"; }

# expect CODE PATTERN DESCRIPTION -- command...
expect() {
    code=$1; pattern=$2; what=$3; shift 4
    "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    if [ "$got" -ne "$code" ]; then
        fail "$what: exit $got, expected $code; stderr: $(head -c 300 "$TMP/err")"
    elif [ -n "$pattern" ] && ! grep -qi -- "$pattern" "$TMP/err" "$TMP/out"; then
        fail "$what: output lacks \"$pattern\"; stderr: $(head -c 300 "$TMP/err")"
    else
        pass "$what"
    fi
}

T="$SOTTO transcribe --model $MODEL --beam-size 1 --no-fallback"

# The JFK sentence in every format.
expect 0 "" "text output" -- $T "$JFK"
grep -q "ask not what your country can do for you" "$TMP/out" || fail "text lacks the JFK sentence"
expect 0 "" "srt output" -- $T --format srt "$JFK"
grep -q "^00:00:00,000 --> 00:00:07,740" "$TMP/out" || fail "srt lacks the first cue: $(head -3 "$TMP/out")"
expect 0 "" "vtt output" -- $T --format vtt "$JFK"
head -1 "$TMP/out" | grep -q "^WEBVTT" || fail "vtt lacks the header"
grep -q "00:00:07.740 --> 00:00:10.740" "$TMP/out" || fail "vtt lacks the second cue"
expect 0 "" "json output" -- $T --format json "$JFK"
python3 -c "
import json,sys
d=json.load(open('$TMP/out'))
assert abs(d['duration']-11.0)<1e-6, d['duration']
assert d['segments'][0]['tokens'][0]==50363
assert 'fellow Americans' in d['text']
" || fail "json output is not the expected document"

# Ogg/Opus (libopusfile), from a file and on stdin; a copy with a flipped
# byte fails its page's checksum, which loses the page: exit 2 and a
# message naming the libopusfile code (tests/audio covers the rest).
expect 0 "" "ogg/opus file" -- $T "$JFK_OPUS"
grep -q "ask not what your country can do for you" "$TMP/out" || fail "ogg/opus text lacks the JFK sentence: $(cat "$TMP/out")"
expect 0 "" "ogg/opus on stdin" -- sh -c "$T - < '$JFK_OPUS'"
grep -q "ask not what your country" "$TMP/out" || fail "stdin ogg/opus text"
python3 - "$JFK_OPUS" "$TMP" <<'PY' || fail "cannot build the damaged ogg/opus file"
import sys
d = bytearray(open(sys.argv[1], 'rb').read())
pages, off = [], 0
while off < len(d):
    n = d[off + 26]
    size = 27 + n + sum(d[off + 27:off + 27 + n])
    pages.append((off, size))
    off += size
off, size = pages[6]
d[off + size - 100] ^= 0x40
open(sys.argv[2] + '/hole.opus', 'wb').write(d)
PY
expect 2 "OP_HOLE" "ogg/opus with a corrupt page" -- $T "$TMP/hole.opus"

# stdin: a WAV stream and raw s16le (the WAV's data after its 44-byte header).
expect 0 "" "wav on stdin" -- sh -c "$T - < '$JFK'"
grep -q "ask not what your country" "$TMP/out" || fail "stdin wav text"
tail -c +45 "$JFK" > "$TMP/jfk.raw"
expect 0 "" "raw s16le on stdin" -- sh -c "$T --raw --rate 16000 - < '$TMP/jfk.raw'"
grep -q "ask not what your country" "$TMP/out" || fail "stdin raw text"
expect 2 "rate" "raw without --rate" -- $T --raw - 

# Bad input: exit 2 and a message that names the problem.
expect 2 "no such file" "missing file" -- $T "$TMP/nope.wav"
printf 'this is not audio, just text\n' > "$TMP/text.wav"
expect 2 "not" "text file" -- $T "$TMP/text.wav"
: > "$TMP/empty.wav"
expect 2 "empty" "empty file" -- $T "$TMP/empty.wav"
head -c 20 "$JFK" > "$TMP/trunc.wav"
expect 2 "truncated WAV header" "truncated header" -- $T "$TMP/trunc.wav"
head -c 44 "$JFK" > "$TMP/trunc44.wav"
expect 2 "truncated WAV file" "truncated before its data chunk" -- $T "$TMP/trunc44.wav"
python3 - "$TMP" <<'PY'
import struct, sys, math
d = sys.argv[1]
fmt = struct.pack('<HHIIHH', 1, 1, 16000, 32000, 2, 16)
body = b'WAVE' + b'fmt ' + struct.pack('<I', 16) + fmt + b'data' + struct.pack('<I', 0)
open(d + '/nodata.wav', 'wb').write(b'RIFF' + struct.pack('<I', len(body)) + body)
def float_wav(path, samples):
    data = b''.join(struct.pack('<f', s) for s in samples)
    fmt = struct.pack('<HHIIHH', 3, 1, 16000, 64000, 4, 32)
    body = b'WAVE' + b'fmt ' + struct.pack('<I', 16) + fmt + b'data' + struct.pack('<I', len(data)) + data
    open(path, 'wb').write(b'RIFF' + struct.pack('<I', len(body)) + body)
float_wav(d + '/nan.wav', [0.0] * 800 + [float('nan')] + [0.0] * 800)
float_wav(d + '/inf.wav', [0.1] * 1600 + [float('inf')])
PY
expect 2 "no frames" "header without samples" -- $T "$TMP/nodata.wav"
expect 2 "nan" "NaN samples" -- $T "$TMP/nan.wav"
expect 2 "infinite" "Inf samples" -- $T "$TMP/inf.wav"
# MAX_STDIN_BYTES (src/client/main.c): 14400 s x 48 kHz x 2 channels x 2
# bytes + 1 MiB.  A sparse file one byte longer is refused by its size,
# named as a file and as redirected stdin, with nothing read.
truncate -s 2765848577 "$TMP/huge.raw"
expect 2 "larger than the length limit" "raw file over the limit" -- $T --raw --rate 16000 "$TMP/huge.raw"
expect 2 "larger than the length limit" "stdin file over the limit" -- sh -c "$T - < '$TMP/huge.raw'"
rm -f "$TMP/huge.raw"
printf 'abc' > "$TMP/odd.raw"
expect 2 "partial" "raw input with a partial frame" -- sh -c "$T --raw --rate 16000 - < '$TMP/odd.raw'"

# An initial prompt conditions the first window; the speech still wins.
expect 0 "" "initial prompt" -- $T --initial-prompt "President Kennedy's inaugural address." "$JFK"
grep -q "what you can do for your country" "$TMP/out" || fail "initial prompt text: $(cat "$TMP/out")"

# Full default decoding (beam 5, temperature fallback) and word timestamps.
expect 0 "" "default decoding with words" -- $SOTTO transcribe --model "$MODEL" --word-timestamps --format json "$JFK"
python3 -c "
import json
d=json.load(open('$TMP/out'))
w=[x for s in d['segments'] for x in s['words']]
assert len(w)==22 and w[0]['word'].strip()=='And', w[:2]
assert all(a['start']<=a['end'] for a in w)
" || fail "word timestamps in json"

# Fetching with no reachable index fails with a clear message and leaves
# nothing behind.
expect 1 "offline" "fetch while offline" -- env PIP_INDEX_URL=http://127.0.0.1:9/simple \
    PIP_NO_INDEX= PIP_RETRIES=0 PIP_TIMEOUT=2 PIP_FIND_LINKS= PIP_NO_CACHE_DIR=1 \
    $SOTTO model fetch tiny.en --dir "$TMP/models/tiny.en"
[ ! -e "$TMP/models/tiny.en" ] || fail "a failed fetch left $TMP/models/tiny.en behind"
ls "$TMP/models" 2>/dev/null | grep -q fetch && fail "a failed fetch left its staging folder"

# The Silero VAD weights, fetched offline from local wheels built here (pip
# with --no-index): only the one file is installed, a wheel whose file has
# the wrong checksum installs nothing, and `model path` names the file.
mkdir -p "$TMP/wheels" "$TMP/badwheels"
python3 - "$TMP" "$SHARED/models/silero-vad/silero_vad_16k.safetensors" <<'PY' || fail "cannot build test wheels"
import sys, zipfile
d, weights = sys.argv[1], open(sys.argv[2], 'rb').read()
def wheel(path, data):
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('silero_vad/__init__.py', '')
        z.writestr('silero_vad/data/silero_vad.onnx', b'not used by sotto')
        z.writestr('silero_vad/data/silero_vad_16k.safetensors', data)
        z.writestr('silero_vad-6.2.1.dist-info/METADATA',
                   'Metadata-Version: 2.1\nName: silero-vad\nVersion: 6.2.1\n')
        z.writestr('silero_vad-6.2.1.dist-info/WHEEL', 'Wheel-Version: 1.0\n'
                   'Generator: test_cli\nRoot-Is-Purelib: true\nTag: py3-none-any\n')
        z.writestr('silero_vad-6.2.1.dist-info/RECORD', '')
wheel(d + '/wheels/silero_vad-6.2.1-py3-none-any.whl', weights)
bad = bytearray(weights); bad[-1] ^= 1
wheel(d + '/badwheels/silero_vad-6.2.1-py3-none-any.whl', bytes(bad))
PY
LOCAL_PIP="env PIP_NO_INDEX=1 PIP_NO_CACHE_DIR=1 PIP_INDEX_URL= PIP_EXTRA_INDEX_URL="
expect 1 "checksum" "silero-vad fetch of a corrupt wheel" -- $LOCAL_PIP PIP_FIND_LINKS="$TMP/badwheels" \
    $SOTTO model fetch silero-vad --dir "$TMP/models/silero-vad"
[ ! -e "$TMP/models/silero-vad" ] || fail "a failed silero-vad fetch left $TMP/models/silero-vad behind"
expect 0 "installed in" "silero-vad fetch from a local wheel" -- $LOCAL_PIP PIP_FIND_LINKS="$TMP/wheels" \
    $SOTTO model fetch silero-vad --dir "$TMP/models/silero-vad"
[ "$(ls "$TMP/models/silero-vad")" = "silero_vad_16k.safetensors" ] ||
    fail "silero-vad fetch installed: $(ls "$TMP/models/silero-vad")"
cmp -s "$TMP/models/silero-vad/silero_vad_16k.safetensors" \
    "$SHARED/models/silero-vad/silero_vad_16k.safetensors" || fail "silero-vad weights differ"
expect 0 "already installed" "silero-vad fetch again" -- $LOCAL_PIP PIP_FIND_LINKS="$TMP/badwheels" \
    $SOTTO model fetch silero-vad --dir "$TMP/models/silero-vad"
expect 0 "" "silero-vad path" -- env XDG_DATA_HOME="$TMP/xdg" $SOTTO model path silero-vad
[ "$(cat "$TMP/out")" = "$TMP/xdg/sotto/models/silero-vad/silero_vad_16k.safetensors" ] ||
    fail "model path silero-vad: $(cat "$TMP/out")"
expect 0 "" "model list" -- $SOTTO model list
grep -q "^silero-vad" "$TMP/out" && grep -q "^tiny.en" "$TMP/out" || fail "model list: $(cat "$TMP/out")"

# A float32 conversion of the model gives exactly the same tokens.
python3 tests/engine/make_f32_model.py "$MODEL" "$TMP/f32" || fail "cannot build a float32 model"
expect 0 "" "float32 model" -- $SOTTO transcribe --model "$TMP/f32" --beam-size 1 --no-fallback --format json "$JFK"
cp "$TMP/out" "$TMP/f32.json"
expect 0 "" "float16 model" -- $T --format json "$JFK"
python3 -c "
import json
a=json.load(open('$TMP/f32.json')); b=json.load(open('$TMP/out'))
ta=[t for s in a['segments'] for t in s['tokens']]; tb=[t for s in b['segments'] for t in s['tokens']]
assert ta==tb, (ta, tb)
" || fail "float32 and float16 models disagree"
rm -rf "$TMP/f32"

# Bad usage and a bad model.
expect 2 "" "no input" -- $SOTTO transcribe
expect 2 "" "bad format" -- $T --format xml "$JFK"
expect 2 "" "unknown command" -- $SOTTO frobnicate
expect 1 "cannot open" "model folder without model.bin" -- $SOTTO transcribe --model "$TMP" "$JFK"
expect 2 "unknown model" "fetch of an unknown model" -- $SOTTO model fetch no-such-model

if [ "$fails" -ne 0 ]; then
    echo "test_cli: $fails check(s) FAILED"
    exit 1
fi
echo "test_cli: all checks passed"
