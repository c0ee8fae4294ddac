#!/usr/bin/env python3
"""Load and soak test of `sotto serve` (`make soak`): a long run at the
measured capacity with streams continuously starting and ending, then an
overload at twice that.

Usage:
    soak.py --sotto build/sotto --model DIR --shared ../shared
            [--duration 1800] [--overload 300] [--streams 4] [--seed 1]
            [--report FILE] [--quick]

One server (2 workers, --max-streams STREAMS) and STREAMS clients, each
playing one recording after another in real time: the manifest's
recordings in a seeded random order, 100 ms frames of s16le over the
native WebSocket protocol, frame k sent at t0 + (k + 1) x 0.1 s (t0: the
stream's audio time 0), then "finish", then the next recording.  STREAMS
defaults to 4, the capacity bench/serve_bench.py measured on the 2-core
machine (bench/README.md, "Server capacity").

Phases:
  warm-up   60 s at load (10 s with --quick), not measured;
  soak      --duration s at load; afterwards the clients stop and the
            server goes idle;
  overload  --overload s with twice STREAMS clients: the server admits
            STREAMS, the others are refused and retry after 1 s; one OpenAI
            REST request every 10 s as well.

Measured:
  commit latency of every word: (the client's receive time of its final)
            - t0 - the word's end; p50, p90 and p99 per 5-minute window of
            the soak (1 minute with --quick) and over each phase;
  RSS and open fds of every server process (supervisor, gateway, each
            worker) every 30 s under load, and idle at two points: after
            the first window of the soak (a worker's buffers reach their
            working size only once it has run a long stream, which takes
            minutes; the clients pause until the server is idle) and after
            the soak; the check compares those two;
  errors    error events, closes other than 1000, refused or failed
            connections during the soak; in the overload, refusals that
            are not close 1013 (or 503 for REST);
  accuracy  WER of every stream against its reference.

Passes when: no error during the soak; every process's RSS grew by at most
5 % and its fd count did not grow; in the overload every refusal was clean
(1013 / 503) and the admitted streams' p90 commit latency stayed within
1.5 x the soak's.  The report (--report, JSON) holds every figure.
Exit status: 0 pass, 1 a check failed, 2 usage/setup error.
"""
import argparse
import json
import logging
import os
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_serve as ts  # noqa: E402
from test_serve import check, textnorm  # noqa: E402

IMPORT_ERROR = ts.IMPORT_ERROR
try:
    import numpy as np
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect as ws_connect
except ImportError as e:  # pragma: no cover
    IMPORT_ERROR = IMPORT_ERROR or f"{e} (pip install websockets numpy)"

FRAME_S = 0.1
T0 = time.monotonic()


def now():
    return time.monotonic() - T0


def log(msg):
    print(f"[{now():7.1f}] {msg}", flush=True)


def pct(xs, q):
    return float(np.percentile(xs, q)) if len(xs) else None


def stream_one(port, pcm, stop):
    """One recording over the native protocol in real time.  Returns a dict:
    status ("ok", "refused", "error"), close code, finals' text, word
    latencies [(receive time since T0, latency)], errors (events)."""
    out = {"status": "error", "code": None, "text": "", "lat": [], "errors": [],
           "why": ""}
    try:
        ws = ws_connect(f"ws://127.0.0.1:{port}/v1/stream", open_timeout=10,
                        close_timeout=10, max_size=None, ping_interval=None,
                        proxy=None, compression=None)
    except Exception as e:  # noqa: BLE001
        out["why"] = f"connect: {e!r}"
        return out
    try:
        first = json.loads(ws.recv(10))
    except ConnectionClosed as e:
        out["code"] = e.rcvd.code if e.rcvd is not None else 1006
        out["status"] = "refused"
        out["why"] = e.rcvd.reason if e.rcvd is not None else ""
        return out
    except Exception as e:  # noqa: BLE001
        out["why"] = f"first event: {e!r}"
        ws.close()
        return out
    if first.get("type") != "ready":
        out["why"] = f"first event {first}"
        ws.close()
        return out
    ws.send(json.dumps({"type": "config", "format": "pcm_s16le", "sample_rate": ts.RATE}))
    t0 = time.monotonic()
    finals, closed = [], threading.Event()

    def reader():
        try:
            for m in ws:
                t = time.monotonic()
                ev = json.loads(m)
                if ev.get("type") == "final":
                    finals.append(ev.get("text", ""))
                    for w in ev.get("words") or []:
                        out["lat"].append((t - T0, (t - t0) - float(w["end"])))
                elif ev.get("type") == "error":
                    out["errors"].append(ev)
        except ConnectionClosed:
            pass
        except Exception as e:  # noqa: BLE001
            out["why"] = f"receive: {e!r}"
        out["code"] = ws.close_code
        closed.set()
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    step = int(ts.RATE * FRAME_S) * 2
    try:
        for k, at in enumerate(range(0, len(pcm), step)):
            if stop.is_set() or closed.is_set():
                break
            delay = t0 + (k + 1) * FRAME_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ws.send(pcm[at:at + step])
        ws.send(json.dumps({"type": "finish"}))
    except Exception as e:  # noqa: BLE001
        out["why"] = f"send: {e!r}"
    closed.wait(max(30.0, len(pcm) / 2 / ts.RATE))
    try:
        ws.close()
    except Exception:  # noqa: BLE001
        pass
    out["text"] = "".join(finals)
    if out["code"] == 1000 and not out["errors"] and not out["why"]:
        out["status"] = "ok"
    return out


class Client(threading.Thread):
    """Plays recordings one after another until told to stop; a refused
    client waits 1 s and tries again."""

    def __init__(self, port, names, rng, phase, results, lock):
        super().__init__(daemon=True)
        self.port, self.names, self.rng = port, names, rng
        self.phase, self.results, self.lock = phase, results, lock
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            name = self.rng.choice(self.names)
            pcm, ref = ts.AUDIO[name]
            phase = self.phase[0]
            r = stream_one(self.port, pcm.tobytes(), self.stop)
            r["name"], r["phase"] = name, phase
            r["wer"] = ts.wer(ref, r["text"]) if r["status"] == "ok" else None
            with self.lock:
                self.results.append(r)
            if r["status"] == "refused":
                self.stop.wait(1.0)


def usage(srv):
    """{role: (rss_kb, fds)} of the server's processes."""
    out = {}
    for role, pid in sorted(srv.roles.items()):
        try:
            out[role] = (ts.proc_rss_kb(pid), ts.proc_fds(pid))
        except OSError:
            continue
    return out


def rest_probe(port, data):
    """One OpenAI REST transcription: the HTTP status."""
    b = uuid.uuid4().hex
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/audio/transcriptions",
                                 data=body, method="POST", headers={
                                     "Content-Type": f"multipart/form-data; boundary={b}"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def run_phase(srv, names, rng, n, seconds, phase, results, lock, rest_every=None,
              samples=None):
    phase_box = [phase]
    clients = [Client(srv.http, names, random.Random(rng.random()), phase_box, results, lock)
               for _ in range(n)]
    for c in clients:
        c.start()
        time.sleep(1.0 / n)
    rest = []
    t_end = time.monotonic() + seconds
    next_rest = time.monotonic() + (rest_every or 0)
    next_sample = time.monotonic()
    while time.monotonic() < t_end:
        time.sleep(1.0)
        if samples is not None and time.monotonic() >= next_sample:
            samples.append((now(), usage(srv)))
            next_sample += 30.0
        if rest_every and time.monotonic() >= next_rest:
            with open(os.path.join(ts.ARGS.shared, "audio", ts.JFK), "rb") as f:
                rest.append(rest_probe(srv.http, f.read()))
            next_rest = time.monotonic() + rest_every
    for c in clients:
        c.stop.set()
    for c in clients:
        c.join(120)
    return rest


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sotto", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--overload", type=float, default=None)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--report", default=None)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--server-log", action="store_true")
    ap.add_argument("--server-sotto", default="")
    ts.ARGS = args = ap.parse_args()
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    if IMPORT_ERROR:
        print(f"soak: {IMPORT_ERROR}", file=sys.stderr)
        return 2
    duration = args.duration or (120.0 if args.quick else 1800.0)
    overload = args.overload or (60.0 if args.quick else 300.0)
    warmup = 10.0 if args.quick else 60.0
    window = 60.0 if args.quick else 300.0
    n = args.streams
    ts.load_manifest(args.shared)
    # The recordings chaos.py plays (not the PocketSphinx test files or the
    # LJ Speech files of chapter 2), and the long LJ Speech file as well.
    names = sorted(n for n in ts.AUDIO
                   if not n.startswith(("pocketsphinx-", "ljspeech-LJ002")))
    ts.set_subreaper()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    rng = random.Random(args.seed)
    print(f"soak: {n} streams for {duration:.0f} s, then {2 * n} for {overload:.0f} s; "
          f"seed {args.seed}; {len(names)} recordings", flush=True)
    srv = ts.Server(name="soak", workers=2, extra=["--max-streams", str(n)])
    report = {"streams": n, "duration_s": duration, "overload_s": overload,
              "seed": args.seed}
    results, lock = [], threading.Lock()
    try:
        log("warm-up")
        run_phase(srv, names, rng, n, warmup, "warmup", results, lock)
        ts.wait_streams_idle(srv, 60)
        log(f"soak: usage after warm-up {usage(srv)}")
        t_soak = now()
        samples = []
        first = min(window, duration / 2)
        run_phase(srv, names, rng, n, first, "soak", results, lock, samples=samples)
        ts.wait_streams_idle(srv, 60)
        time.sleep(2.0)
        before = usage(srv)
        log(f"soak: usage after {first:.0f} s, idle: {before}")
        run_phase(srv, names, rng, n, duration - first, "soak", results, lock,
                  samples=samples)
        ts.wait_streams_idle(srv, 60)
        time.sleep(2.0)
        after = usage(srv)
        log(f"soak: usage after {duration:.0f} s {after}")
        soak = [r for r in results if r["phase"] == "soak"]
        lat = [x for r in soak for x in r["lat"]]
        windows = []
        for w0 in np.arange(t_soak, t_soak + duration, window):
            xs = [v for (t, v) in lat if w0 <= t < w0 + window]
            windows.append({"from_s": round(w0 - t_soak), "words": len(xs),
                            "p50": pct(xs, 50), "p90": pct(xs, 90), "p99": pct(xs, 99)})
        soak_lat = [v for _, v in lat]
        errors = [r for r in soak if r["status"] != "ok"]
        wers = [r["wer"] for r in soak if r["wer"] is not None]
        log("overload")
        rest = run_phase(srv, names, rng, 2 * n, overload, "overload", results, lock,
                         rest_every=10.0)
        ol = [r for r in results if r["phase"] == "overload"]
        admitted = [r for r in ol if r["status"] != "refused"]
        refused = [r for r in ol if r["status"] == "refused"]
        ol_lat = [v for r in admitted for _, v in r["lat"]]
        report.update({
            "usage_before": before, "usage_after": after, "windows": windows,
            "usage_samples": [{"t_s": round(t - t_soak), "usage": u} for t, u in samples],
            "soak": {"streams": len(soak), "errors": len(errors),
                     "error_samples": [{k: r[k] for k in ("name", "code", "why", "errors")}
                                       for r in errors[:10]],
                     "words": len(soak_lat), "p50": pct(soak_lat, 50),
                     "p90": pct(soak_lat, 90), "p99": pct(soak_lat, 99),
                     "mean_wer": float(np.mean(wers)) if wers else None},
            "overload": {"admitted": len(admitted),
                         "admitted_ok": sum(r["status"] == "ok" for r in admitted),
                         "refused": len(refused),
                         "refusal_codes": sorted({r["code"] for r in refused}),
                         "rest_statuses": rest, "words": len(ol_lat),
                         "p50": pct(ol_lat, 50), "p90": pct(ol_lat, 90),
                         "p99": pct(ol_lat, 99)}})
        print("\n| window (s) | words | p50 (s) | p90 (s) | p99 (s) |\n|---:|---:|---:|---:|---:|")
        for w in windows:
            f = (lambda v: f"{v:.2f}" if v is not None else "-")
            print(f"| {w['from_s']} | {w['words']} | {f(w['p50'])} | {f(w['p90'])} | "
                  f"{f(w['p99'])} |")
        print(f"\nsoak: {len(soak)} streams, {len(errors)} errors, {len(soak_lat)} words, "
              f"p50/p90/p99 {pct(soak_lat, 50):.2f}/{pct(soak_lat, 90):.2f}/"
              f"{pct(soak_lat, 99):.2f} s, mean WER {report['soak']['mean_wer']:.3f}")
        print(f"\nRSS and fds, idle: after the first {first:.0f} s of the soak, and after it")
        print("| process | RSS before (MiB) | RSS after (MiB) | growth | fds before | fds after |")
        print("|---|---:|---:|---:|---:|---:|")
        for role in sorted(before):
            if role in after:
                b, a = before[role], after[role]
                print(f"| {role} | {b[0] / 1024:.1f} | {a[0] / 1024:.1f} | "
                      f"{(a[0] - b[0]) / b[0] * 100:+.1f} % | {b[1]} | {a[1]} |")
        o = report["overload"]
        print(f"\noverload: {o['admitted']} admitted ({o['admitted_ok']} ok), "
              f"{o['refused']} refused with {o['refusal_codes']}, REST {rest}, "
              f"p90 {o['p90'] if o['p90'] is None else round(o['p90'], 2)} s "
              f"(soak {pct(soak_lat, 90):.2f} s)")

        check("soak: every stream completed with close 1000 and no error event",
              not errors, json.dumps(report["soak"]["error_samples"])[:600])
        check("soak: the same server processes before and after",
              set(before) == set(after), f"{sorted(before)} {sorted(after)}")
        for role in sorted(before):
            if role in after:
                b, a = before[role], after[role]
                check(f"soak: {role} RSS grew by at most 5 % ({b[0]} -> {a[0]} kB)",
                      a[0] <= b[0] * 1.05)
                check(f"soak: {role} open fds did not grow ({b[1]} -> {a[1]})", a[1] <= b[1])
        check("overload: every refused stream got close 1013",
              refused and o["refusal_codes"] == [1013], str(o["refusal_codes"]))
        check("overload: every REST request got 200 or 503",
              rest and all(s in (200, 503) for s in rest), str(rest))
        check("overload: every admitted stream completed",
              o["admitted"] > 0 and o["admitted_ok"] == o["admitted"],
              json.dumps([{k: r[k] for k in ("name", "code", "why")}
                          for r in admitted if r["status"] != "ok"][:5]))
        check("overload: admitted streams' p90 commit latency within 1.5 x the soak's",
              o["p90"] is not None and o["p90"] <= 1.5 * pct(soak_lat, 90),
              f"{o['p90']} vs {pct(soak_lat, 90)}")
    finally:
        srv.stop()
        if args.report:
            os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
            with open(args.report, "w") as f:
                json.dump(report, f, indent=1)
    return ts.summary("soak", now())


if __name__ == "__main__":
    sys.exit(main())
