#!/usr/bin/env python3
"""Check sotto's transcripts against the faster-whisper golden data.

Usage:
    check_golden.py --sotto build/sotto --model DIR --shared DIR
                    --set greedy|beam5|words [--files a.wav,b.wav]
                    [--threads 2] [--timeout 600] [--golden DIR]

For every file of the set (or of --files) it runs

    SOTTO transcribe --model DIR --threads 2 --beam-size N --format json
          [--word-timestamps] SHARED/audio/FILE

(N is the set's beam size, --word-timestamps for the "words" set), parses the
JSON on stdout and compares it with tests/golden/<set>.json, written by
make_golden.py.  It prints a per-file table and a summary, and asserts:

  (a) tokens: the concatenation of all segments' "tokens" equals
      faster-whisper's on all files but ceil(10 %) of them (17 of 19 for the
      full set);
  (b) text: the corpus WER of sotto's text against faster-whisper's text is
      at most 2 %;
  (c) segment times: on files whose token sequences are identical, sotto has
      the same number of segments and every start/end is within 0.1 s of
      faster-whisper's;
  (d) accuracy: the corpus WER against the human references (manifest.tsv
      "normalized" column) is at most faster-whisper's + 0.5 points;
  (e) words set only: on token-identical files, at least 90 % of the words
      have both start and end within 0.1 s of faster-whisper's (words are
      paired by position; a file whose word count differs counts all its
      words as misses).

All texts, human references included, go through textnorm.normalize.  A sotto
run that fails, times out or prints invalid JSON is a failure by itself.
Exit status: 0 all checks passed, 1 a check failed, 2 usage/setup error.

Stdlib only plus textnorm.py next to this file: it must run without
faster-whisper installed (make test).
"""

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import textnorm  # noqa: E402

TIME_TOL = 0.1          # seconds, segment and word boundaries
TIME_EPS = 1e-6         # float noise on top of TIME_TOL
MAX_WER_VS_FW = 0.02    # (b)
MAX_HUMAN_WER_EXCESS = 0.005  # (d), 0.5 points absolute
MIN_WORDS_WITHIN = 0.90  # (e)


def die(msg):
    print(f"check_golden: {msg}", file=sys.stderr)
    sys.exit(2)


def find_audio_dir(shared):
    """The dir holding the .wav files and manifest.tsv: SHARED/audio or SHARED."""
    for cand in (os.path.join(shared, "audio"), shared):
        if os.path.isfile(os.path.join(cand, "manifest.tsv")):
            return cand
    die(f"no manifest.tsv under {shared} or {shared}/audio")


def default_shared():
    repo = os.path.dirname(os.path.dirname(HERE))
    for cand in (os.environ.get("SOTTO_SHARED"), os.path.join(repo, "shared"),
                 os.path.join(repo, "..", "shared"), "/work/shared"):
        if cand and os.path.isdir(cand):
            return cand
    return None


def read_manifest(audio_dir):
    with open(os.path.join(audio_dir, "manifest.tsv"), newline="", encoding="utf-8") as f:
        return {row["file"]: row["normalized"]
                for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_sotto(args, beam, words, path):
    """Run sotto on one file; return (parsed json or None, error string or None, secs)."""
    # The references decode at temperature 0 only (make_golden.py), so
    # sotto's temperature fallback is off too.
    cmd = [args.sotto, "transcribe", "--model", args.model,
           "--threads", str(args.threads), "--beam-size", str(beam),
           "--no-fallback", "--format", "json"]
    if words:
        cmd.append("--word-timestamps")
    cmd.append(path)
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {args.timeout} s", time.monotonic() - t0
    except OSError as e:
        return None, f"cannot run {args.sotto}: {e}", time.monotonic() - t0
    secs = time.monotonic() - t0
    if p.returncode != 0:
        err = p.stderr.decode("utf-8", "replace").strip().splitlines()
        return None, f"exit status {p.returncode}: {err[-1] if err else ''}", secs
    try:
        out = json.loads(p.stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"invalid JSON on stdout: {e}", secs
    if not isinstance(out, dict) or not isinstance(out.get("segments"), list):
        return None, "JSON has no \"segments\" list", secs
    return out, None, secs


def concat_tokens(segments):
    toks = []
    for s in segments:
        toks.extend(int(t) for t in s.get("tokens") or [])
    return toks


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def seg_text(out):
    if isinstance(out.get("text"), str):
        return out["text"]
    return "".join(s.get("text", "") for s in out["segments"])


def compare_words(fw_segs, so_segs):
    """(words within TIME_TOL, fw word count) for one token-identical file."""
    fw = [w for s in fw_segs for w in s.get("words") or []]
    so = [w for s in so_segs for w in s.get("words") or []]
    if len(fw) != len(so):
        return 0, len(fw)
    ok = sum(1 for a, b in zip(fw, so)
             if abs(a["start"] - float(b["start"])) <= TIME_TOL + TIME_EPS
             and abs(a["end"] - float(b["end"])) <= TIME_TOL + TIME_EPS)
    return ok, len(fw)


def pct(x):
    return f"{100 * x:.2f}%"


def main():
    ap = argparse.ArgumentParser(
        description="Check sotto against faster-whisper golden transcripts.")
    ap.add_argument("--sotto", required=True, help="path to the sotto binary")
    ap.add_argument("--model", default=os.environ.get("SOTTO_MODEL"),
                    help="model dir (default: $SOTTO_MODEL)")
    ap.add_argument("--shared", default=default_shared(),
                    help="shared dir with audio/ (default: $SOTTO_SHARED, "
                         "./shared, ../shared or /work/shared)")
    ap.add_argument("--set", required=True, choices=["greedy", "beam5", "words"])
    ap.add_argument("--files", help="comma-separated subset of the golden files")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600, help="seconds per file")
    ap.add_argument("--golden", default=HERE, help="dir with <set>.json")
    args = ap.parse_args()

    if not args.model:
        die("no model: pass --model DIR or set SOTTO_MODEL")
    if not args.shared:
        die("no shared dir: pass --shared DIR or set SOTTO_SHARED")
    if not os.access(args.sotto, os.X_OK):
        die(f"{args.sotto} is not an executable")
    golden_path = os.path.join(args.golden, f"{args.set}.json")
    try:
        with open(golden_path, encoding="utf-8") as f:
            golden = json.load(f)
    except OSError as e:
        die(f"cannot read golden data: {e} (run make_golden.py)")
    meta = golden.pop("meta")
    beam = int(meta["options"]["beam_size"])
    words_set = bool(meta["options"]["word_timestamps"])
    audio_dir = find_audio_dir(args.shared)
    human = read_manifest(audio_dir)

    files = sorted(golden)
    if args.files:
        want = [f for f in args.files.split(",") if f]
        unknown = [f for f in want if f not in golden]
        if unknown:
            die(f"not in {golden_path}: {', '.join(unknown)}")
        files = want
    if not files:
        die("no files to check")

    want_sha = meta.get("model", {}).get("sha256", {}).get("model.bin")
    bin_path = os.path.join(args.model, "model.bin")
    if want_sha and os.path.isfile(bin_path) and sha256_file(bin_path) != want_sha:
        print(f"WARNING: {bin_path} differs from the model the golden data was "
              f"made with (sha256 {want_sha[:12]}...): expect token mismatches",
              file=sys.stderr)

    print(f"golden set {args.set}: faster-whisper {meta.get('faster_whisper')}, "
          f"ctranslate2 {meta.get('ctranslate2')}, beam {beam}"
          f"{', word timestamps' if words_set else ''}; {len(files)} files")
    hdr = (f"{'file':<56} {'dur':>6} {'tokens':>12} {'segs':>7} {'max dt':>7} "
           f"{'WER/fw':>7} {'WER hum':>15} {'words':>9} {'secs':>6}")
    print(hdr)
    print("-" * len(hdr))

    failures = []
    n_same = 0
    fw_err = so_err = fw_hum_err = so_hum_err = 0
    fw_words = hum_words = 0
    words_ok = words_total = 0
    seg_bad = []
    for name in files:
        g = golden[name]
        out, err, secs = run_sotto(args, beam, words_set, os.path.join(audio_dir, name))
        if err:
            failures.append(f"{name}: sotto failed: {err}")
            print(f"{name:<56} {g['duration']:6.1f} FAILED: {err}")
            continue
        so_segs = out["segments"]
        fw_segs = g["segments"]
        fw_tok, so_tok = concat_tokens(fw_segs), concat_tokens(so_segs)
        same = fw_tok == so_tok
        if same:
            n_same += 1
            tok_col = "same"
        else:
            tok_col = f"diff@{first_diff(fw_tok, so_tok)}/{len(fw_tok)}"

        # (b) and (d): corpus word errors
        e, n = textnorm.word_errors(g["text"], seg_text(out))
        so_err += e
        fw_words += n
        ref = human.get(name, (g.get("reference") or {}).get("normalized"))
        if ref is None:
            die(f"{name}: no human reference in the manifest")
        e_fw, n_h = textnorm.word_errors(ref, g["text"])
        e_so, _ = textnorm.word_errors(ref, seg_text(out))
        fw_hum_err += e_fw
        so_hum_err += e_so
        hum_words += n_h

        # (c) segment times and (e) word times on token-identical files
        dt_col, w_col = "-", "-"
        if same:
            if len(so_segs) != len(fw_segs):
                seg_bad.append(f"{name}: {len(so_segs)} segments, faster-whisper "
                               f"has {len(fw_segs)}")
                dt_col = "count"
            else:
                dt = max((max(abs(a["start"] - float(b["start"])),
                              abs(a["end"] - float(b["end"])))
                          for a, b in zip(fw_segs, so_segs)), default=0.0)
                dt_col = f"{dt:.3f}"
                if dt > TIME_TOL + TIME_EPS:
                    seg_bad.append(f"{name}: a segment boundary is {dt:.3f} s off")
            if words_set:
                ok, tot = compare_words(fw_segs, so_segs)
                words_ok += ok
                words_total += tot
                w_col = f"{ok}/{tot}"
        hum_col = (f"{pct(e_so / n_h) if n_h else '-'}/"
                   f"{pct(e_fw / n_h) if n_h else '-'}")
        print(f"{name:<56} {g['duration']:6.1f} {tok_col:>12} "
              f"{len(so_segs):>3}/{len(fw_segs):<3} {dt_col:>7} "
              f"{pct(e / n) if n else '-':>7} {hum_col:>15} {w_col:>9} {secs:6.1f}")

    # ---- summary and assertions ----
    n = len(files)
    allowed = (n + 9) // 10  # ceil(10 %)
    need = n - allowed
    print()
    print("summary (WER hum = sotto/faster-whisper vs human references):")
    ok_a = n_same >= need
    print(f"  (a) token sequences identical: {n_same}/{n} (need >= {need})"
          f"  {'ok' if ok_a else 'FAIL'}")
    if not ok_a:
        failures.append(f"(a) token sequences identical on {n_same}/{n} files, "
                        f"need {need}")

    wer_fw = so_err / fw_words if fw_words else 0.0
    ok_b = wer_fw <= MAX_WER_VS_FW + 1e-12
    print(f"  (b) WER vs faster-whisper text: {pct(wer_fw)} ({so_err}/{fw_words} "
          f"words, limit {pct(MAX_WER_VS_FW)})  {'ok' if ok_b else 'FAIL'}")
    if not ok_b:
        failures.append(f"(b) WER vs faster-whisper {pct(wer_fw)} > {pct(MAX_WER_VS_FW)}")

    ok_c = not seg_bad
    print(f"  (c) segment times within {TIME_TOL} s on token-identical files: "
          f"{'ok' if ok_c else 'FAIL'}")
    for msg in seg_bad:
        print(f"      {msg}")
        failures.append(f"(c) {msg}")

    so_h = so_hum_err / hum_words if hum_words else 0.0
    fw_h = fw_hum_err / hum_words if hum_words else 0.0
    ok_d = so_h <= fw_h + MAX_HUMAN_WER_EXCESS + 1e-12
    print(f"  (d) WER vs human references: sotto {pct(so_h)}, faster-whisper "
          f"{pct(fw_h)} ({hum_words} words, limit {pct(fw_h + MAX_HUMAN_WER_EXCESS)})"
          f"  {'ok' if ok_d else 'FAIL'}")
    if not ok_d:
        failures.append(f"(d) WER vs human {pct(so_h)} > faster-whisper {pct(fw_h)} "
                        f"+ 0.5 points")

    if words_set:
        frac = words_ok / words_total if words_total else 1.0
        ok_e = frac >= MIN_WORDS_WITHIN
        print(f"  (e) words within {TIME_TOL} s on token-identical files: "
              f"{words_ok}/{words_total} = {pct(frac)} (need "
              f">= {pct(MIN_WORDS_WITHIN)})  {'ok' if ok_e else 'FAIL'}")
        if not ok_e:
            failures.append(f"(e) only {pct(frac)} of words within {TIME_TOL} s")

    print()
    if failures:
        print(f"check_golden {args.set}: FAILED", file=sys.stderr)
        for msg in failures:
            print(f"  {msg}", file=sys.stderr)
        return 1
    print(f"check_golden {args.set}: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
