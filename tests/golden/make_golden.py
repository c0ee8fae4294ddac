#!/usr/bin/env python3
"""Generate sotto's golden reference transcripts with faster-whisper.

Run ONCE by a developer (it needs faster-whisper and ctranslate2; `make test`
does not).  For every ``*.wav`` in the shared audio directory it runs
``faster_whisper.WhisperModel(MODEL, device="cpu", compute_type="float32",
cpu_threads=2).transcribe(...)`` three times and writes one JSON file per set:

    tests/golden/greedy.json  beam_size=1, best_of=1
    tests/golden/beam5.json   beam_size=5, best_of=1
    tests/golden/words.json   beam_size=1, best_of=1, word_timestamps=True

All three use a single temperature 0.0 (no fallback), timestamps on,
condition_on_previous_text=True, no VAD, language "en"; every decoding option
is passed explicitly (see ``base_options``) so a change of faster-whisper's
defaults cannot silently change the data.  The exact options are recorded in
``meta.options``.

Output contract (what check_golden.py reads)::

    {
      "meta": {"faster_whisper": "1.2.1", "ctranslate2": "4.x", "model": {...
               sha256 per file ...}, "options": {...}, "resolved": {...}, ...},
      "<file>.wav": {
        "duration": secs,                      # faster-whisper's info.duration
        "text": "...",                         # "".join(segment.text).strip()
        "reference": {"transcript": "...", "normalized": "..."},  # human
        "segments": [{"id", "seek", "start", "end", "text",
                      "tokens": [...],         # Segment.tokens, see below
                      "temperature", "avg_logprob", "no_speech_prob",
                      "compression_ratio",
                      "words": [{"start","end","word","probability"}]  # words set only
                     }]
      }, ...
    }

``Segment.tokens`` in faster-whisper 1.2.1 is the slice of the sampled
sequence that produced the segment: it starts with the segment's start
timestamp token and (for a completed segment) ends with its end timestamp
token, with the text tokens in between.  It never contains the prompt,
<|startoftranscript|>, <|notimestamps|> or <|endoftext|>.  When a window
contains no timestamp pair the whole sampled sequence is one segment.
Times are rounded to 1 ms (they are multiples of 10/20 ms anyway); the other
floats are stored as Python repr'd them.

The output is deterministic: files are processed in sorted order, no run
times or dates are stored, and ctranslate2 runs float32 on 2 CPU threads.

Usage:  python3 tests/golden/make_golden.py [--model /tmp/tiny]
            [--shared /work/shared] [--out tests/golden] [--sets greedy,beam5,words]
            [--files a.wav,b.wav]
"""

import argparse
import csv
import hashlib
import json
import os
import re
import sys
import time

# Pin the thread count before ctranslate2 (and its OpenMP runtime) loads.
THREADS = 2
os.environ["OMP_NUM_THREADS"] = str(THREADS)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

SETS = {
    "greedy": {"beam_size": 1, "word_timestamps": False},
    "beam5": {"beam_size": 5, "word_timestamps": False},
    "words": {"beam_size": 1, "word_timestamps": True},
}


def base_options():
    """Every transcribe() option, spelled out (faster-whisper 1.2.1 names)."""
    return {
        "language": "en",
        "task": "transcribe",
        "beam_size": 1,
        "best_of": 1,
        "patience": 1.0,
        "length_penalty": 1.0,
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "temperature": [0.0],  # a single temperature: no fallback
        "compression_ratio_threshold": 2.4,
        "log_prob_threshold": -1.0,
        "no_speech_threshold": 0.6,
        "condition_on_previous_text": True,
        "prompt_reset_on_temperature": 0.5,
        "initial_prompt": None,
        "prefix": None,
        "suppress_blank": True,
        "suppress_tokens": [-1],
        "without_timestamps": False,
        "max_initial_timestamp": 1.0,
        "word_timestamps": False,
        "prepend_punctuations": "\"'\u201c\u00bf([{-",
        "append_punctuations": "\"'.\u3002,\uff0c!\uff01?\uff1f:\uff1a\u201d)]}\u3001",
        "multilingual": False,
        "vad_filter": False,
        "max_new_tokens": None,
        "chunk_length": None,
        "clip_timestamps": "0",
        "hallucination_silence_threshold": None,
        "hotwords": None,
    }


def find_audio_dir(shared):
    """Accept either the shared root (with audio/) or the audio dir itself."""
    for cand in (os.path.join(shared, "audio"), shared):
        if os.path.isfile(os.path.join(cand, "manifest.tsv")):
            return cand
    sys.exit(f"make_golden: no manifest.tsv under {shared} or {shared}/audio")


def read_manifest(audio_dir):
    """file -> {"transcript", "normalized"} from manifest.tsv (tab separated)."""
    refs = {}
    with open(os.path.join(audio_dir, "manifest.tsv"), newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            refs[row["file"]] = {
                "transcript": row["transcript"],
                "normalized": row["normalized"],
            }
    return refs


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def t3(x):
    """Times to 1 ms: they are multiples of 10 ms plus float noise."""
    return round(float(x), 3)


def dump_json(obj, path):
    """Indented JSON with integer lists (token ids) kept on one line.

    A JSON string cannot contain a raw newline, so a bracket followed by a
    newline is always structural: the collapse cannot touch transcript text.
    """
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    text = re.sub(
        r"\[\n\s*(-?\d+(?:,\n\s*-?\d+)*)\n\s*\]",
        lambda m: "[" + re.sub(r",\n\s*", ", ", m.group(1)) + "]",
        text,
    )
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.environ.get("SOTTO_MODEL", "/tmp/tiny"))
    ap.add_argument("--shared", default=os.environ.get("SOTTO_SHARED", "/work/shared"))
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--sets", default="greedy,beam5,words")
    ap.add_argument("--files", default=None, help="comma list (default: every .wav)")
    args = ap.parse_args()

    import ctranslate2
    import faster_whisper
    from faster_whisper import WhisperModel
    from faster_whisper.transcribe import get_suppressed_tokens
    from faster_whisper.tokenizer import Tokenizer

    audio_dir = find_audio_dir(args.shared)
    refs = read_manifest(audio_dir)
    files = sorted(f for f in os.listdir(audio_dir) if f.endswith(".wav"))
    if args.files:
        want = args.files.split(",")
        missing = [f for f in want if f not in files]
        if missing:
            sys.exit(f"make_golden: not in {audio_dir}: {', '.join(missing)}")
        files = sorted(want)
    sets = args.sets.split(",")
    for s in sets:
        if s not in SETS:
            sys.exit(f"make_golden: unknown set {s!r} (known: {', '.join(SETS)})")

    model_files = {
        name: sha256_file(os.path.join(args.model, name))
        for name in sorted(os.listdir(args.model))
        if os.path.isfile(os.path.join(args.model, name))
    }
    model = WhisperModel(args.model, device="cpu", compute_type="float32",
                         cpu_threads=THREADS, num_workers=1)

    # Token ids the decoder needs to reproduce faster-whisper exactly.
    tok = Tokenizer(model.hf_tokenizer, model.model.is_multilingual,
                    task="transcribe", language="en")
    resolved = {
        "sot_sequence": list(tok.sot_sequence),
        "eot": tok.eot,
        "no_timestamps": tok.no_timestamps,
        "timestamp_begin": tok.timestamp_begin,
        "sot_prev": tok.sot_prev,
        "suppress_tokens": list(get_suppressed_tokens(tok, [-1])),
        "time_precision": model.time_precision,
        "max_length": model.max_length,
    }

    t_all = time.monotonic()
    for set_name in sets:
        opts = base_options()
        opts.update(SETS[set_name])
        out = {
            "meta": {
                "set": set_name,
                "generator": "tests/golden/make_golden.py",
                "faster_whisper": faster_whisper.__version__,
                "ctranslate2": ctranslate2.__version__,
                "model": {"name": os.path.basename(os.path.normpath(args.model)),
                          "sha256": model_files},
                "model_init": {"device": "cpu", "compute_type": "float32",
                               "cpu_threads": THREADS, "num_workers": 1},
                "options": opts,
                "resolved": resolved,
                "segment_tokens": "Segment.tokens: sampled timestamp+text tokens "
                                  "of the segment (start ts, text..., end ts); no "
                                  "prompt/SOT/EOT",
            }
        }
        t_set = time.monotonic()
        for name in files:
            t0 = time.monotonic()
            kw = dict(opts)
            kw["temperature"] = list(kw["temperature"])
            kw["suppress_tokens"] = list(kw["suppress_tokens"])
            segments, info = model.transcribe(os.path.join(audio_dir, name), **kw)
            segs = []
            for s in segments:  # a generator: decoding happens here
                seg = {
                    "id": s.id,
                    "seek": s.seek,
                    "start": t3(s.start),
                    "end": t3(s.end),
                    "text": s.text,
                    "tokens": list(s.tokens),
                    "temperature": s.temperature,
                    "avg_logprob": s.avg_logprob,
                    "no_speech_prob": s.no_speech_prob,
                    "compression_ratio": s.compression_ratio,
                }
                if opts["word_timestamps"]:
                    seg["words"] = [
                        {"start": t3(w.start), "end": t3(w.end), "word": w.word,
                         "probability": w.probability}
                        for w in (s.words or [])
                    ]
                segs.append(seg)
            out[name] = {
                "duration": info.duration,
                "text": "".join(s["text"] for s in segs).strip(),
                "reference": refs.get(name, {"transcript": None, "normalized": None}),
                "segments": segs,
            }
            print(f"[{set_name}] {name}: {len(segs)} segments, "
                  f"{time.monotonic() - t0:.1f} s", flush=True)
        path = os.path.join(args.out, f"{set_name}.json")
        dump_json(out, path)
        print(f"[{set_name}] wrote {path} in {time.monotonic() - t_set:.1f} s", flush=True)
    print(f"total {time.monotonic() - t_all:.1f} s")


if __name__ == "__main__":
    main()
