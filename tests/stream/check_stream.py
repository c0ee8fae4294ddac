#!/usr/bin/env python3
"""End-to-end check of streaming: real model, real speech, real VAD.

Usage:
    check_stream.py --sotto build/sotto --model DIR --shared DIR
                    [--files jfk.wav,LONG] [--chunks 100,1000] [--threads 2]
                    [--quick]

--quick streams the long file in 1 s chunks only (jfk.wav still in both); the
sanitized test run uses it, where the long file costs several times more.

For every file and chunk size it runs

    SOTTO transcribe --stream --format json --chunk-ms C --model DIR
          --vad-model SHARED/models/silero-vad/silero_vad_16k.safetensors FILE

which plays the file through the streaming API on a simulated real-time
clock, and the offline `SOTTO transcribe --beam-size 1` on the same file.
It asserts:

  (a) every line is a JSON event of a known type, emission times never go
      back, and the run ends with a stats line and exit status 0;
  (b) committed text only grows: every final's words start no earlier than
      the previous final's last word ends (0.1 s tolerance for alignment
      jitter), so no word is committed twice and none is revised;
  (c) every utterance_end closes an utterance that had finals, and no final
      is left without one at the end;
  (d) accuracy: the WER of the streamed text against the human reference
      (manifest.tsv) is at most the offline WER + 3 points;
  (e) agreement: the WER of the streamed text against the offline
      transcript is at most 6 % (printed, so drift is visible);
  (f) nothing is dropped at the end: the last three words of the offline
      transcript end the streamed text too.

Exit status: 0 all checks passed, 1 a check failed, 2 usage/setup error.
"""
import argparse
import csv
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "golden"))
import textnorm  # noqa: E402

LONG = "ljspeech-LJ001-0001_to_0032-long.wav"


def run_stream(args, path, chunk):
    vad = os.path.join(args.shared, "models", "silero-vad",
                       "silero_vad_16k.safetensors")
    cmd = [args.sotto, "transcribe", "--stream", "--format", "json",
           "--chunk-ms", str(chunk), "--threads", str(args.threads),
           "--model", args.model, "--vad-model", vad, path]
    p = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=args.timeout)
    return p.returncode, p.stdout, p.stderr


def check_events(name, rc, out, err):
    """Returns (problems, final_text, stats)."""
    problems = []
    if rc != 0:
        problems.append(f"exit status {rc}: {err.strip()[-300:]}")
    last_emit = -1.0
    last_end = -1e9
    open_utt = False
    text = []
    stats = None
    for i, line in enumerate(out.splitlines()):
        try:
            ev = json.loads(line)
        except ValueError:
            problems.append(f"line {i + 1} is not JSON: {line[:80]}")
            continue
        t = ev.get("type")
        if t == "stats":
            stats = ev
            continue
        if t not in ("partial", "final", "utterance_end", "error"):
            problems.append(f"line {i + 1}: unknown event type {t!r}")
            continue
        if ev["emit"] < last_emit:
            problems.append(f"line {i + 1}: emission time goes back")
        last_emit = ev["emit"]
        if t == "error":
            problems.append(f"error event: {ev.get('message')}")
        elif t == "final":
            words = ev.get("words", [])
            if not words:
                problems.append(f"line {i + 1}: a final without words")
            for w in words:
                if w["start"] < last_end - 0.1:
                    problems.append(
                        f"line {i + 1}: word {w['text']!r} at {w['start']} "
                        f"starts before the committed end {last_end}")
                last_end = max(last_end, w["end"])
            text.append(ev["text"])
            open_utt = True
        elif t == "utterance_end":
            if not open_utt:
                problems.append(f"line {i + 1}: utterance_end without finals")
            open_utt = False
    if open_utt:
        problems.append("the stream ended with finals but no utterance_end")
    if stats is None:
        problems.append("no stats line")
    return problems, "".join(text), stats or {}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sotto", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--files", default="jfk.wav," + LONG)
    ap.add_argument("--chunks", default="100,1000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=3600)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()

    manifest = os.path.join(args.shared, "audio", "manifest.tsv")
    try:
        with open(manifest, newline="") as f:
            refs = {r["file"]: r["transcript"]
                    for r in csv.DictReader(f, delimiter="\t")}
    except OSError as e:
        print(f"check_stream: {e}", file=sys.stderr)
        return 2

    failed = False
    print(f"{'file':<40} {'chunk':>6} {'WER':>6} {'offl':>6} {'vsOff':>6} "
          f"{'lat50':>6} {'lat90':>6} {'rtf':>6}")
    for name in args.files.split(","):
        path = os.path.join(args.shared, "audio", name)
        off = subprocess.run(
            [args.sotto, "transcribe", "--beam-size", "1", "--threads",
             str(args.threads), "--model", args.model, path],
            capture_output=True, text=True, timeout=args.timeout)
        if off.returncode != 0:
            print(f"{name}: offline run failed: {off.stderr.strip()}")
            failed = True
            continue
        offline = off.stdout
        off_wer = textnorm.wer(refs[name], offline)
        chunks = [int(c) for c in args.chunks.split(",")]
        if args.quick and name == LONG:
            chunks = [c for c in chunks if c >= 1000] or chunks[-1:]
        for chunk in chunks:
            rc, out, err = run_stream(args, path, chunk)
            problems, streamed, st = check_events(name, rc, out, err)
            wer = textnorm.wer(refs[name], streamed)
            vs_off = textnorm.wer(offline, streamed)
            if wer > off_wer + 0.03:
                problems.append(f"WER {wer:.3f} exceeds offline {off_wer:.3f}"
                                " + 3 points")
            if vs_off > 0.06:
                problems.append(f"WER against the offline text {vs_off:.3f} "
                                "exceeds 6 %")
            tail_off = textnorm.words(offline)[-3:]
            tail_str = textnorm.words(streamed)[-3:]
            if tail_off != tail_str:
                problems.append(f"the end differs: offline {tail_off}, "
                                f"streamed {tail_str}")
            print(f"{name[:40]:<40} {chunk:>6} {wer:6.3f} {off_wer:6.3f} "
                  f"{vs_off:6.3f} {st.get('commit_latency_median', 0):6.2f} "
                  f"{st.get('commit_latency_p90', 0):6.2f} "
                  f"{st.get('rtf', 0):6.3f}")
            for p in problems:
                print(f"  FAIL {name} @{chunk} ms: {p}")
            failed |= bool(problems)
    print("check_stream: " + ("FAILED" if failed else "all checks passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
