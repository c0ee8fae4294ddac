#!/usr/bin/env python3
"""Streaming benchmark: sotto --stream against faster-whisper (bench/stream_fw.py).

Usage:
    python3 bench/stream_bench.py [--sotto build/sotto] [--model DIR]
        [--audio ljspeech-LJ001-0001_to_0032-long.wav] [--repeat 1]
        [--shared ../shared] [--threads 2] [--chunk-ms 1000] [--beam 1]
        [--only both|sotto|fw] [--no-offline] [--out FILE]
    python3 bench/stream_bench.py --selftest      # checks the metric code only

Both systems play the file on the same simulated real-time clock (see
bench/stream_fw.py and bench/README.md, "Streaming") and print JSON lines:
    sotto transcribe --stream --json --chunk-ms C -b B --threads N --model M FILE
    python3 bench/stream_fw.py --json --chunk-ms C --beam B --threads N --model M FILE
each as a fresh process with OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = N; the
child's peak RSS comes from os.wait4.  From the events, per run:

  commit latency      for every word of every final event: emit - word end
                      (median and p90 over all words of the run)
  first partial       per utterance: emit of its first event with non-empty
                      text (partial or final) - start of the first word
                      committed for it (median over utterances)
  RTF                 compute_seconds / audio_seconds of the stats line (else
                      the child's wall time / audio duration)
  WER                 of the concatenated final text against the manifest's
                      reference (tests/golden/textnorm.py), and of one offline
                      run of each system (sotto transcribe -b B; faster-whisper
                      transcribe with beam B, default options) for the
                      streaming - offline difference in points
  duplicates          consecutive committed words with the same normalized text
                      whose time spans overlap (a word committed twice)
  peak RSS            MiB, ru_maxrss of the child

Prints a Markdown table (medians over --repeat runs, targets beside them, the
ratio sotto / faster-whisper) and writes everything, events included, to
bench/results/stream-<UTC timestamp>.json (or --out).

If sotto has no --stream yet (checked with `sotto transcribe --help`) or
faster-whisper is not importable, that side is skipped with a warning
(an error with --only naming it).
"""

import argparse
import csv
import datetime
import importlib.util
import json
import os
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

DEFAULT_AUDIO = "ljspeech-LJ001-0001_to_0032-long.wav"
VAD_FILE = "silero_vad_16k.safetensors"
SYSTEMS = ("sotto", "fw")
LABEL = {"sotto": "sotto", "fw": "faster-whisper"}

# metric -> (label, target text, check(value) -> bool or None, format)
TARGETS = {
    "commit_latency_median_s": ("commit latency median (s)", "<= 2.0", lambda v: v <= 2.0, "{:.2f}"),
    "commit_latency_p90_s": ("commit latency p90 (s)", "<= 3.5", lambda v: v <= 3.5, "{:.2f}"),
    "first_partial_median_s": ("first-partial latency median (s)", "<= 1.0", lambda v: v <= 1.0, "{:.2f}"),
    "rtf": ("real-time factor (compute / audio)", "<= 0.5", lambda v: v <= 0.5, "{:.3f}"),
    "wer_stream_pct": ("WER streaming (%)", "", None, "{:.1f}"),
    "wer_offline_pct": ("WER offline (%)", "", None, "{:.1f}"),
    "wer_delta_points": ("WER streaming - offline (points)", "<= +1.5", lambda v: v <= 1.5, "{:+.1f}"),
    "duplicates": ("duplicate words (overlapping repeats)", "0", lambda v: v == 0, "{:.0f}"),
    "repeated_ngram_words": ("words repeating the 2-5 words before them", "", None, "{:.0f}"),
    "zero_length_words": ("zero-length words", "", None, "{:.0f}"),
    "peak_rss_mb": ("peak RSS (MiB)", "", None, "{:.0f}"),
    "finish_lag_s": ("last event after end of audio (s)", "", None, "{:.2f}"),
    "words": ("committed words", "", None, "{:.0f}"),
    "utterances": ("utterances", "", None, "{:.0f}"),
    "wall_s": ("wall time of a run (s, model load incl.)", "", None, "{:.1f}"),
}


# rows where sotto / faster-whisper means something
RATIO_KEYS = ("commit_latency_median_s", "commit_latency_p90_s", "first_partial_median_s",
              "rtf", "peak_rss_mb", "finish_lag_s", "wall_s")


def die(msg):
    print(f"stream_bench: {msg}", file=sys.stderr)
    sys.exit(2)


def warn(msg):
    print(f"stream_bench: warning: {msg}", file=sys.stderr)


# ---------------------------------------------------------------- metrics

def _num(x):
    """x as a finite float, or None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if x == x and x not in (float("inf"), float("-inf")) else None


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def percentile(xs, q):
    """Linear-interpolated percentile (q in 0..100) of xs, None if empty."""
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def parse_events(stdout):
    """(events, number of non-JSON or non-object lines) from JSON-lines output."""
    events, bad = [], 0
    for line in (stdout or "").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(ev, dict) and isinstance(ev.get("type"), str):
            events.append(ev)
        else:
            bad += 1
    return events, bad


def committed_words(events):
    """Every committed word in emission order: dicts start, end, text, emit, utterance."""
    out = []
    for ev in events:
        if ev.get("type") != "final":
            continue
        emit = _num(ev.get("emit"))
        words = ev.get("words")
        if not isinstance(words, list):
            continue
        for w in words:
            if not isinstance(w, dict):
                continue
            out.append({"start": _num(w.get("start")), "end": _num(w.get("end")),
                        "text": w.get("text") if isinstance(w.get("text"), str) else "",
                        "emit": emit, "utterance": ev.get("utterance")})
    return out


def final_text(events):
    return "".join(ev["text"] for ev in events
                   if ev.get("type") == "final" and isinstance(ev.get("text"), str))


def count_duplicates(words):
    """(overlapping repeats, adjacent repeats) among consecutive committed words."""
    overlap = adjacent = 0
    prev = None
    for w in words:
        key = textnorm.normalize(w["text"])
        if prev is not None and key and key == prev[0]:
            adjacent += 1
            if w["start"] is not None and prev[1] is not None and w["start"] < prev[1]:
                overlap += 1
        prev = (key, w["end"])
    return overlap, adjacent


def repeated_ngram_words(words):
    """Words that repeat the 2..5 words just before them (a decoding loop)."""
    keys = [textnorm.normalize(w["text"]) for w in words]
    count, i = 0, 0
    while i < len(keys):
        for n in range(5, 1, -1):
            if i >= n and i + n <= len(keys) and keys[i:i + n] == keys[i - n:i]:
                count += n
                i += n
                break
        else:
            i += 1
    return count


def first_partial_latencies(events, words):
    """Per utterance: first emit with text - start of its first committed word."""
    first_emit = {}
    for ev in events:
        if ev.get("type") not in ("partial", "final"):
            continue
        text = ev.get("text")
        emit = _num(ev.get("emit"))
        if not isinstance(text, str) or not text.strip() or emit is None:
            continue
        u = ev.get("utterance")
        if u not in first_emit or emit < first_emit[u]:
            first_emit[u] = emit
    first_start = {}
    for w in words:
        u = w["utterance"]
        if w["start"] is not None and (u not in first_start or w["start"] < first_start[u]):
            first_start[u] = w["start"]
    return [first_emit[u] - first_start[u] for u in first_emit if u in first_start]


def metrics(events, ref=None, audio_s=None, wall_s=None, offline_text=None):
    """All per-run metrics from one run's events; None where not computable."""
    words = committed_words(events)
    lat = [w["emit"] - w["end"] for w in words if w["emit"] is not None and w["end"] is not None]
    fpl = first_partial_latencies(events, words)
    stats = next((ev for ev in reversed(events) if ev.get("type") == "stats"), None)
    audio = _num(stats.get("audio_seconds")) if stats else None
    compute = _num(stats.get("compute_seconds")) if stats else None
    audio = audio or audio_s
    if compute is not None and audio:
        rtf, rtf_source = compute / audio, "stats"
    elif wall_s is not None and audio:
        rtf, rtf_source = wall_s / audio, "wall"
    else:
        rtf, rtf_source = None, None
    text = final_text(events)
    wer = textnorm.wer(ref, text) if ref is not None else None
    wer_off = textnorm.wer(ref, offline_text) if ref is not None and offline_text is not None else None
    overlap, adjacent = count_duplicates(words)
    emits = [_num(ev.get("emit")) for ev in events if ev.get("type") != "stats"]
    emits = [e for e in emits if e is not None]
    types = {}
    for ev in events:
        types[ev["type"]] = types.get(ev["type"], 0) + 1
    return {
        "commit_latency_median_s": median(lat),
        "commit_latency_p90_s": percentile(lat, 90),
        "commit_latency_max_s": max(lat) if lat else None,
        "first_partial_median_s": median(fpl),
        "first_partial_all_s": fpl,
        "rtf": rtf, "rtf_source": rtf_source,
        "compute_s": compute,
        "wer_stream_pct": 100 * wer if wer is not None else None,
        "wer_offline_pct": 100 * wer_off if wer_off is not None else None,
        "wer_delta_points": 100 * (wer - wer_off) if wer is not None and wer_off is not None else None,
        "duplicates": overlap, "adjacent_repeats": adjacent,
        "repeated_ngram_words": repeated_ngram_words(words),
        "zero_length_words": sum(1 for w in words if w["start"] is not None and
                                 w["end"] is not None and w["end"] <= w["start"]),
        "words": len(words),
        "utterances": types.get("utterance_end", 0),
        "errors": types.get("error", 0),
        "event_counts": types,
        "finish_lag_s": (max(emits) - audio) if emits and audio else None,
        "text": text,
    }


def selftest():
    """The metric code on hand-made event streams, edge cases included."""
    ref = "and so my fellow americans"
    assert metrics([], ref)["words"] == 0
    m = metrics([], ref, audio_s=10, wall_s=2)
    assert m["commit_latency_median_s"] is None and m["first_partial_median_s"] is None
    assert m["rtf"] == 0.2 and m["rtf_source"] == "wall" and m["wer_stream_pct"] == 100.0
    assert metrics([], None)["wer_stream_pct"] is None
    evs, bad = parse_events('garbage\n{"type":"final","emit":2.0,"utterance":0,"start":0.5,'
                            '"end":1.0,"text":" And so","words":[{"start":0.5,"end":0.8,'
                            '"text":" And","p":0.9},{"start":0.8,"end":1.0,"text":" so"}]}\n'
                            '[1]\n\n{"type":"stats","audio_seconds":4,"compute_seconds":1}\n')
    assert bad == 2 and len(evs) == 2
    m = metrics(evs, ref, offline_text="And so my fellow Americans.")
    assert abs(m["commit_latency_median_s"] - 1.1) < 1e-9, m
    assert abs(m["first_partial_median_s"] - 1.5) < 1e-9  # no partials: the final counts
    assert m["rtf"] == 0.25 and m["rtf_source"] == "stats"
    assert m["wer_offline_pct"] == 0 and abs(m["wer_delta_points"] - 60) < 1e-9
    # a partial with text comes first; an empty partial does not count
    evs2 = [{"type": "partial", "emit": 0.9, "utterance": 0, "text": ""},
            {"type": "partial", "emit": 1.2, "utterance": 0, "text": " And"}] + evs
    assert abs(metrics(evs2, ref)["first_partial_median_s"] - 0.7) < 1e-9
    # empty / odd finals: no words, missing fields, non-numeric times
    odd = [{"type": "final", "emit": 1.0, "text": ""},
           {"type": "final", "emit": "x", "words": [{"start": None, "end": "y", "text": 3}, 7]},
           {"type": "final", "words": None}, {"type": "error", "code": -6, "message": "m"}]
    m = metrics(odd, ref)
    assert m["words"] == 1 and m["commit_latency_median_s"] is None and m["errors"] == 1
    # duplicates: same word, overlapping spans
    dup = [{"type": "final", "emit": 3.0, "utterance": 0, "text": " so so",
            "words": [{"start": 1.0, "end": 1.4, "text": " so"},
                      {"start": 1.2, "end": 1.5, "text": " So,"},
                      {"start": 2.0, "end": 2.2, "text": " so"}]}]
    m = metrics(dup, None)
    assert m["duplicates"] == 1 and m["adjacent_repeats"] == 2
    loop = [{"type": "final", "emit": 3.0, "utterance": 0, "text": "",
             "words": [{"start": 1.0, "end": 1.0 if i > 3 else 1.5, "text": t}
                       for i, t in enumerate(" And so my fellow and so my fellow and so".split(" ")[1:])]}]
    m = metrics(loop, None)
    assert m["repeated_ngram_words"] == 4 and m["zero_length_words"] == 6, m
    assert percentile([3, 1, 2], 50) == 2 and percentile([1, 2], 90) == 1.9
    print("stream_bench: selftest ok")


# ---------------------------------------------------------------- running

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
    with open(os.path.join(audio_dir, "manifest.tsv"), newline="", encoding="utf-8") as f:
        return {r["file"]: r["normalized"]
                for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}


def audio_duration(path):
    try:
        with wave.open(path, "rb") as w:
            return w.getnframes() / w.getframerate()
    except (wave.Error, EOFError, OSError):
        return None


def default_model(sotto):
    if os.environ.get("SOTTO_MODEL"):
        return os.environ["SOTTO_MODEL"]
    if sotto and os.access(sotto, os.X_OK):
        try:
            p = subprocess.run([sotto, "model", "path", "tiny.en"], capture_output=True,
                               text=True, timeout=30)
            if p.returncode == 0 and os.path.isdir(p.stdout.strip()):
                return p.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return "/tmp/tiny" if os.path.isdir("/tmp/tiny") else None


def cpu_busy(seconds=2.0):
    """Fraction of all CPUs busy over the next `seconds` (/proc/stat), or None."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0)   # total, idle + iowait
    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (i1 - i0) / (t1 - t0) if t1 > t0 else None


def sotto_help(sotto):
    """The text of `sotto transcribe --help` ("" when it cannot run)."""
    try:
        p = subprocess.run([sotto, "transcribe", "--help"], capture_output=True, text=True,
                           timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return p.stdout + p.stderr


def sotto_vad_args(sotto, help_text, shared):
    """--vad-model FILE when sotto has no installed Silero weights but the
    shared dir has them (the streaming mode needs them)."""
    if "--vad-model" not in help_text:
        return []
    try:
        p = subprocess.run([sotto, "model", "path", "silero-vad"], capture_output=True,
                           text=True, timeout=30)
        d = p.stdout.strip()
        if p.returncode == 0 and d and (os.path.isfile(d) or
                                        os.path.isfile(os.path.join(d, VAD_FILE))):
            return []
    except (OSError, subprocess.SubprocessError):
        pass
    f = os.path.join(shared, "models", "silero-vad", VAD_FILE)
    return ["--vad-model", f] if os.path.isfile(f) else []


def measure(cmd, env, timeout):
    """Run cmd once: (wall s, peak RSS MiB, exit code, stdout, stderr, CPU s)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        killer = threading.Timer(timeout, p.kill)
        killer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return (wall, ru.ru_maxrss / 1024.0, p.returncode,
                out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
                ru.ru_utime + ru.ru_stime)


def commands(args, path):
    fw = os.path.join(HERE, "stream_fw.py")
    common = ["--threads", str(args.threads), "--model", args.model]
    return {
        "sotto": [args.sotto, "transcribe", "--stream", *args.sotto_json, "--chunk-ms",
                  str(args.chunk_ms), "-b", str(args.beam), *args.sotto_extra, *common, path],
        "fw": [args.python, fw, "--json", "--chunk-ms", str(args.chunk_ms),
               "--beam", str(args.beam), *common, path],
        "sotto_offline": [args.sotto, "transcribe", "-b", str(args.beam), *common, path],
        "fw_offline": [args.python, fw, "--offline", "--beam", str(args.beam), *common, path],
    }


def offline_text(system, stdout):
    if system == "sotto":
        return stdout.strip()
    try:
        obj = json.loads(stdout)
        return obj.get("text") if isinstance(obj, dict) else None
    except ValueError:
        return None


def tail(text, n=15):
    return "\n".join(text.strip().splitlines()[-n:])


def fmt(key, v):
    if v is None:
        return "-"
    s = TARGETS[key][3].format(v)
    check = TARGETS[key][2]
    if check is not None:
        s += " ✓" if check(v) else " ✗"
    return s


def write_results(out_path, doc):
    """Writes a bench's JSON document (creating its directory) and says so."""
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as fp:
        json.dump(doc, fp, indent=1, ensure_ascii=False)
        fp.write("\n")
    print(f"wrote {out_path}")


def main():
    ap = argparse.ArgumentParser(description="Streaming benchmark: sotto vs faster-whisper")
    ap.add_argument("--sotto", default=os.path.join("build", "sotto"))
    ap.add_argument("--model", default=None,
                    help="CTranslate2 model dir (default: $SOTTO_MODEL, "
                         "`SOTTO model path tiny.en`, /tmp/tiny)")
    ap.add_argument("--audio", default=DEFAULT_AUDIO,
                    help="a file in the shared audio dir, or a path")
    ap.add_argument("--shared", default=default_shared(),
                    help="dir holding audio/manifest.tsv (default: $SOTTO_SHARED, ./shared, "
                         "../shared, /work/shared)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk-ms", type=int, default=1000)
    ap.add_argument("--beam", type=int, default=1)
    ap.add_argument("--only", choices=("both", "sotto", "fw"), default="both")
    ap.add_argument("--no-offline", action="store_true", help="skip the offline WER runs")
    ap.add_argument("--python", default=sys.executable, help="interpreter for stream_fw.py")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per process")
    ap.add_argument("--out", default=None,
                    help="results file (default bench/results/stream-<timestamp>.json)")
    ap.add_argument("--selftest", action="store_true", help="test the metric code and exit")
    args = ap.parse_args()

    if args.selftest:
        selftest()
        return 0
    if args.repeat < 1 or args.threads < 1 or args.chunk_ms < 1 or args.beam < 1:
        die("--repeat, --threads, --chunk-ms and --beam must be >= 1")

    systems = list(SYSTEMS) if args.only == "both" else [args.only]
    help_text = ""
    if "sotto" in systems:
        why = None
        if not os.access(args.sotto, os.X_OK):
            why = f"{args.sotto} is not an executable (build it with make)"
        elif "--stream" not in (help_text := sotto_help(args.sotto)):
            why = f"{args.sotto} has no --stream mode yet"
        if why:
            if args.only == "sotto":
                die(why)
            warn(why + ": running faster-whisper only")
            systems.remove("sotto")
    if "fw" in systems and importlib.util.find_spec("faster_whisper") is None:
        if args.only == "fw":
            die("faster-whisper is not installed (pip install faster-whisper==1.2.1)")
        warn("faster-whisper is not installed: running sotto only")
        systems.remove("fw")
    if not systems:
        die("nothing left to run")

    if args.model is None:
        args.model = default_model(args.sotto)
    if not args.model or not os.path.isdir(args.model):
        die(f"model dir {args.model!r} not found: pass --model DIR or set SOTTO_MODEL")
    if not args.shared:
        die("no shared dir: pass --shared DIR or set SOTTO_SHARED")
    audio_dir = find_audio_dir(args.shared)
    # the JSON-lines switch: --json where sotto has it, else --format json
    args.sotto_json = ["--json"] if "--json" in help_text else ["--format", "json"]
    args.sotto_extra = (sotto_vad_args(args.sotto, help_text, args.shared)
                        if "sotto" in systems else [])
    refs = read_refs(audio_dir)
    path = args.audio if os.path.isfile(args.audio) else os.path.join(audio_dir, args.audio)
    if not os.path.isfile(path):
        die(f"{args.audio} not found (nor in {audio_dir})")
    ref = refs.get(os.path.basename(path))
    if ref is None:
        warn(f"no reference transcript for {os.path.basename(path)}: no WER")
    duration = audio_duration(path)

    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(args.threads)
    env["OPENBLAS_NUM_THREADS"] = str(args.threads)
    cmds = commands(args, path)
    t_start = time.monotonic()
    failures = []

    # offline baselines (once each; for the WER difference)
    offline = {}
    if not args.no_offline:
        for s in systems:
            wall, rss, rc, out, err, _ = measure(cmds[s + "_offline"], env, args.timeout)
            text = offline_text(s, out) if rc == 0 else None
            if rc != 0:
                failures.append(f"{s} offline exit {rc}")
                warn(f"{LABEL[s]} offline run failed (exit {rc}):\n{tail(err)}")
            wer = textnorm.wer(ref, text) if ref is not None and text is not None else None
            offline[s] = {"wall_s": wall, "peak_rss_mb": rss, "exit": rc, "text": text,
                          "wer_pct": 100 * wer if wer is not None else None}
            print(f"  [offline] {LABEL[s]}: {wall:.1f} s, {rss:.0f} MiB, WER "
                  f"{'-' if wer is None else f'{100 * wer:.1f}%'}", file=sys.stderr, flush=True)

    runs = {s: [] for s in systems}
    for r in range(args.repeat):
        order = systems if r % 2 == 0 else systems[::-1]
        for s in order:
            busy0 = cpu_busy()
            if busy0 is not None and busy0 > 0.2:
                warn(f"CPUs {100 * busy0:.0f}% busy before the {LABEL[s]} run: other work on "
                     "this machine inflates compute time, latency and RTF")
            wall, rss, rc, out, err, cpu = measure(cmds[s], env, args.timeout)
            events, bad = parse_events(out)
            if rc != 0:
                failures.append(f"{s} run {r + 1} exit {rc}")
                warn(f"{LABEL[s]} exited {rc}:\n{tail(err)}")
            if bad:
                warn(f"{LABEL[s]}: {bad} output line(s) that are not JSON events")
            m = metrics(events, ref, duration, wall, offline.get(s, {}).get("text"))
            m.update({"wall_s": wall, "peak_rss_mb": rss, "exit": rc, "bad_lines": bad,
                      "cpu_s": cpu, "cpu_busy_before": busy0})
            runs[s].append({"metrics": m, "events": events,
                            "stderr_tail": tail(err, 30) if rc != 0 else ""})
            print(f"  [run {r + 1}/{args.repeat}] {LABEL[s]}: {wall:.1f} s, {rss:.0f} MiB, "
                  f"{m['words']} words, commit median "
                  f"{fmt('commit_latency_median_s', m['commit_latency_median_s'])}, RTF "
                  f"{fmt('rtf', m['rtf'])}", file=sys.stderr, flush=True)

    # medians across repeats
    summary = {}
    for s in systems:
        summary[s] = {k: median([run["metrics"].get(k) for run in runs[s]]) for k in TARGETS}
        summary[s]["text"] = runs[s][0]["metrics"]["text"] if runs[s] else ""

    name = os.path.basename(path)
    dur = f"{duration:.1f} s" if duration else "?"
    print(f"\nstreaming: {name} ({dur}), chunk {args.chunk_ms} ms, beam {args.beam}, "
          f"{args.threads} threads, median of {args.repeat} run(s)\n")
    cols = [LABEL[s] for s in systems]
    both = len(systems) == 2
    print("| metric | target | " + " | ".join(cols) + (" | sotto / fw |" if both else " |"))
    print("|---|---|" + "---:|" * (len(cols) + both))
    for k, (label, target, _, _) in TARGETS.items():
        vals = [summary[s][k] for s in systems]
        row = f"| {label} | {target or ''} | " + " | ".join(fmt(k, v) for v in vals)
        if both:
            a, b = vals
            ratio = f"{a / b:.2f}" if k in RATIO_KEYS and a is not None and b and b > 0 else "-"
            row += f" | {ratio}"
        print(row + " |")
    print("\ncommit latency: emit - word end over every committed word; first partial: first "
          "event with text - start of the utterance's first committed word; RTF: compute / "
          "audio seconds of the stats line; ✓/✗ against the target.")

    try:
        sys.path.insert(0, HERE)
        import bench  # machine description, shared with bench.py
        info = bench.machine_info(args)
    except Exception as e:  # the benchmark must not fail for the description
        info = {"error": f"{type(e).__name__}: {e}"}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_path = args.out or os.path.join(HERE, "results", f"stream-{stamp}.json")
    doc = {
        "machine": info,
        "config": {"sotto": args.sotto, "model": os.path.abspath(args.model), "audio": path,
                   "duration_s": duration, "threads": args.threads, "chunk_ms": args.chunk_ms,
                   "beam": args.beam, "repeat": args.repeat, "systems": systems,
                   "commands": {k: v for k, v in commands(args, "FILE").items()
                                if k.split("_")[0] in systems},
                   "env": {"OMP_NUM_THREADS": env["OMP_NUM_THREADS"],
                           "OPENBLAS_NUM_THREADS": env["OPENBLAS_NUM_THREADS"]}},
        "targets": {k: v[1] for k, v in TARGETS.items() if v[1]},
        "total_s": time.monotonic() - t_start,
        "failures": failures,
        "summary": summary,
        "offline": offline,
        "runs": runs,
    }
    write_results(out_path, doc)
    if failures:
        print(f"stream_bench: failures: {'; '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
