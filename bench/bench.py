#!/usr/bin/env python3
"""Benchmark sotto against faster-whisper on CPU: wall time and peak memory.

Usage:
    python3 bench/bench.py --sotto build/sotto --model DIR [--runs 5]
        [--threads 2] [--files jfk.wav,ljspeech-LJ001-0001_to_0032-long.wav]
        [--shared DIR] [--warmup 1] [--engines a,b] [--out FILE]

Engines (each measurement is one fresh process, so model load counts for all):
    sotto-b1    SOTTO transcribe --model DIR --threads N --beam-size 1 --no-fallback
                --format json FILE (temperature 0 only, as fw_run.py)
    fw-f32-b1   bench/fw_run.py, faster-whisper compute_type=float32, beam 1
    fw-int8-b1  bench/fw_run.py, faster-whisper compute_type=int8,    beam 1
    sotto-b5    as sotto-b1 with --beam-size 5
    fw-f32-b5   bench/fw_run.py, float32, beam 5
Every process gets OMP_NUM_THREADS=N and OPENBLAS_NUM_THREADS=N, and the
engines' own thread option (--threads / cpu_threads) is N too.

Method: --warmup rounds (discarded) then --runs rounds; each round runs every
(file, engine) pair once, engines interleaved and their order rotated from
round to round, so drift in machine load hits all engines alike.  Wall time
is measured around the child process (spawn to reap); peak RSS is the child's
ru_maxrss from os.wait4 (per child, unlike RUSAGE_CHILDREN).  Reported per
engine and file: median wall time, real-time factor (median wall / audio
duration, lower is faster), median peak RSS, the ratios sotto/fw-f32 and
sotto/fw-int8 at the same beam size (< 1 means sotto is faster/smaller), and
the WER of the first run's text against the human reference.

Prints a Markdown table and writes every raw measurement, the medians and a
description of the machine to bench/results/latest.json (or --out).

If faster-whisper is not importable, says so and runs sotto alone.  Any
engine failure (non-zero exit) aborts with that engine's stderr.
"""

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "golden"))
import textnorm  # noqa: E402

DEFAULT_FILES = "jfk.wav,ljspeech-LJ001-0001_to_0032-long.wav"
# name -> (kind, beam, compute type for faster-whisper)
ENGINES = {
    "sotto-b1": ("sotto", 1, None),
    "fw-f32-b1": ("fw", 1, "float32"),
    "fw-int8-b1": ("fw", 1, "int8"),
    "sotto-b5": ("sotto", 5, None),
    "fw-f32-b5": ("fw", 5, "float32"),
}
# sotto engine -> (its fw-f32 peer, its fw-int8 peer or None)
PEERS = {"sotto-b1": ("fw-f32-b1", "fw-int8-b1"), "sotto-b5": ("fw-f32-b5", None)}


def die(msg):
    print(f"bench: {msg}", file=sys.stderr)
    sys.exit(2)


def default_shared():
    for cand in (os.environ.get("SOTTO_SHARED"), os.path.join(REPO, "shared"),
                 os.path.join(REPO, "..", "shared"), "/work/shared"):
        if cand and os.path.isdir(cand):
            return cand
    return None


def find_audio_dir(shared):
    for cand in (os.path.join(shared, "audio"), shared):
        if os.path.isfile(os.path.join(cand, "manifest.tsv")):
            return cand
    die(f"no manifest.tsv under {shared} or {shared}/audio")


def read_refs(audio_dir):
    import csv
    with open(os.path.join(audio_dir, "manifest.tsv"), newline="", encoding="utf-8") as f:
        return {r["file"]: r["normalized"]
                for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}


def wav_duration(path):
    with wave.open(path, "rb") as w:
        return w.getnframes() / w.getframerate()


def command(engine, args, path):
    kind, beam, ctype = ENGINES[engine]
    if kind == "sotto":
        return [args.sotto, "transcribe", "--model", args.model,
                "--threads", str(args.threads), "--beam-size", str(beam),
                "--no-fallback", "--format", "json", path]
    return [args.python, os.path.join(HERE, "fw_run.py"), "--model", args.model,
            "--compute-type", ctype, "--beam-size", str(beam),
            "--threads", str(args.threads), path]


def measure(cmd, env, timeout):
    """Run cmd once: (wall seconds, peak RSS MiB, exit code, stdout, stderr)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                             env=env)
        killer = threading.Timer(timeout, p.kill)
        killer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # we reaped it ourselves
        out.seek(0)
        err.seek(0)
        return (wall, ru.ru_maxrss / 1024.0, p.returncode,
                out.read().decode("utf-8", "replace"),
                err.read().decode("utf-8", "replace"))


def output_text(stdout):
    """The transcript in an engine's JSON stdout, or None if not JSON."""
    try:
        obj = json.loads(stdout)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("text"), str):
        return obj["text"]
    if isinstance(obj.get("segments"), list):
        return "".join(s.get("text", "") for s in obj["segments"] if isinstance(s, dict))
    return None


def machine_info(args):
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def version(pkg):
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    def git(*a):
        try:
            return subprocess.run(["git", "-C", REPO, *a], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpus_available": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "faster_whisper": version("faster-whisper"),
        "ctranslate2": version("ctranslate2"),
        "sotto_git_commit": git("rev-parse", "HEAD") or None,
        "sotto_git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def fmt_ratio(num, den):
    return f"{num / den:.2f}" if num is not None and den else "-"


def main():
    ap = argparse.ArgumentParser(description="Benchmark sotto against faster-whisper.")
    ap.add_argument("--sotto", required=True, help="the sotto binary")
    ap.add_argument("--model", default=os.environ.get("SOTTO_MODEL"),
                    help="CTranslate2 Whisper model dir (default: $SOTTO_MODEL)")
    ap.add_argument("--runs", type=int, default=5, help="measured rounds (>= 1)")
    ap.add_argument("--warmup", type=int, default=1, help="discarded rounds first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--files", default=DEFAULT_FILES, help="comma-separated .wav names")
    ap.add_argument("--shared", default=default_shared(),
                    help="shared dir with audio/ (default: $SOTTO_SHARED, ./shared, "
                         "../shared or /work/shared)")
    ap.add_argument("--engines", default=",".join(ENGINES),
                    help=f"subset of {','.join(ENGINES)}")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for fw_run.py")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per process")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "latest.json"))
    args = ap.parse_args()

    if not args.model:
        die("no model: pass --model DIR or set SOTTO_MODEL")
    if not os.path.isdir(args.model):
        die(f"model dir {args.model} does not exist")
    if not args.shared:
        die("no shared dir: pass --shared DIR or set SOTTO_SHARED")
    if args.runs < 1 or args.threads < 1 or args.warmup < 0:
        die("--runs and --threads must be >= 1, --warmup >= 0")
    engines = [e for e in args.engines.split(",") if e]
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        die(f"unknown engine(s) {', '.join(bad)}; known: {', '.join(ENGINES)}")
    if any(ENGINES[e][0] == "sotto" for e in engines) and not os.access(args.sotto, os.X_OK):
        die(f"{args.sotto} is not an executable (build it with make)")
    have_fw = importlib.util.find_spec("faster_whisper") is not None
    if not have_fw and any(ENGINES[e][0] == "fw" for e in engines):
        print("bench: faster-whisper is not installed: running sotto only "
              "(pip install faster-whisper to compare)", file=sys.stderr)
        engines = [e for e in engines if ENGINES[e][0] == "sotto"]
    if not engines:
        die("no engine left to run")
    if args.threads > len(os.sched_getaffinity(0)):
        print(f"bench: warning: --threads {args.threads} > "
              f"{len(os.sched_getaffinity(0))} available CPUs", file=sys.stderr)

    audio_dir = find_audio_dir(args.shared)
    refs = read_refs(audio_dir)
    files = [f for f in args.files.split(",") if f]
    for f in files:
        if not os.path.isfile(os.path.join(audio_dir, f)):
            die(f"{f} not found in {audio_dir}")
    durations = {f: wav_duration(os.path.join(audio_dir, f)) for f in files}

    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(args.threads)
    env["OPENBLAS_NUM_THREADS"] = str(args.threads)

    # raw[(file, engine)] = list of {"wall_s", "rss_mb"}
    raw = {(f, e): [] for f in files for e in engines}
    texts = {}
    total_rounds = args.warmup + args.runs
    t_start = time.monotonic()
    for rnd in range(total_rounds):
        warm = rnd < args.warmup
        order = engines[rnd % len(engines):] + engines[:rnd % len(engines)]
        for f in files:
            for e in order:
                wall, rss, rc, out, err = measure(
                    command(e, args, os.path.join(audio_dir, f)), env, args.timeout)
                if rc != 0:
                    tail = "\n".join(err.strip().splitlines()[-15:])
                    die(f"{e} failed on {f} (exit {rc}):\n{tail}")
                if (f, e) not in texts:
                    texts[(f, e)] = output_text(out)
                label = "warmup" if warm else f"run {rnd - args.warmup + 1}/{args.runs}"
                print(f"  [{label}] {f} {e}: {wall:.2f} s, {rss:.0f} MB",
                      file=sys.stderr, flush=True)
                if not warm:
                    raw[(f, e)].append({"wall_s": wall, "rss_mb": rss})

    # ---- aggregate ----
    results = []
    med = {}
    for f in files:
        for e in engines:
            runs = raw[(f, e)]
            walls = [r["wall_s"] for r in runs]
            rsss = [r["rss_mb"] for r in runs]
            m = {"wall_s": statistics.median(walls), "rss_mb": statistics.median(rsss)}
            med[(f, e)] = m
            text = texts.get((f, e))
            wer = (textnorm.wer(refs[f], text)
                   if text is not None and refs.get(f) is not None else None)
            results.append({
                "file": f, "engine": e, "beam_size": ENGINES[e][1],
                "duration_s": durations[f],
                "median_wall_s": m["wall_s"], "min_wall_s": min(walls),
                "max_wall_s": max(walls), "rtf": m["wall_s"] / durations[f],
                "median_peak_rss_mb": m["rss_mb"], "wer_vs_human": wer,
                "runs": runs,
            })
    for r in results:
        peers = PEERS.get(r["engine"])
        if not peers:
            continue
        for key, peer in (("vs_fw_f32", peers[0]), ("vs_fw_int8", peers[1])):
            p = med.get((r["file"], peer)) if peer else None
            if p:
                r[f"wall_ratio_{key}"] = r["median_wall_s"] / p["wall_s"]
                r[f"rss_ratio_{key}"] = r["median_peak_rss_mb"] / p["rss_mb"]

    # ---- report ----
    info = machine_info(args)
    print(f"\nsotto vs faster-whisper, {args.threads} threads, {args.runs} runs "
          f"(+{args.warmup} warmup), medians; {info['cpu']}, "
          f"faster-whisper {info['faster_whisper'] or 'absent'}\n")
    print("| file | engine | wall s | RTF | peak RSS MB | wall / fw-f32 | wall / fw-int8 "
          "| RSS / fw-f32 | RSS / fw-int8 | WER |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        def rat(k):
            v = r.get(k)
            return f"{v:.2f}" if v is not None else "-"
        wer = f"{100 * r['wer_vs_human']:.1f}%" if r["wer_vs_human"] is not None else "-"
        print(f"| {r['file']} ({r['duration_s']:.1f} s) | {r['engine']} "
              f"| {r['median_wall_s']:.2f} | {r['rtf']:.3f} | {r['median_peak_rss_mb']:.0f} "
              f"| {rat('wall_ratio_vs_fw_f32')} | {rat('wall_ratio_vs_fw_int8')} "
              f"| {rat('rss_ratio_vs_fw_f32')} | {rat('rss_ratio_vs_fw_int8')} | {wer} |")
    print("\nRTF = median wall time / audio duration (model load included); "
          "ratios < 1: sotto is faster / uses less memory.")

    doc = {
        "machine": info,
        "config": {"sotto": args.sotto, "model": os.path.abspath(args.model),
                   "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
                   "engines": engines, "files": files,
                   "env": {"OMP_NUM_THREADS": env["OMP_NUM_THREADS"],
                           "OPENBLAS_NUM_THREADS": env["OPENBLAS_NUM_THREADS"]},
                   "commands": {e: command(e, args, "FILE") for e in engines}},
        "total_s": time.monotonic() - t_start,
        "results": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fp:
        json.dump(doc, fp, indent=1)
        fp.write("\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
