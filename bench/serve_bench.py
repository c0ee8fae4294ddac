#!/usr/bin/env python3
"""Capacity benchmark of `sotto serve`: how many real-time streams one server holds.

Usage:
    python3 bench/serve_bench.py [--sotto build/sotto] [--model DIR] [--shared ../shared]
        [--workers 2] [--threads 1] [--streams 1,2,3,4,5,6,8,...] [--duration 120]
        [--out FILE] [--quick] [--reference]

Starts one server,
    SOTTO serve --model DIR --http-port 0 --tcp-port 0 --workers W --threads T
                --state-dir TMP --max-streams 64 --vad-model FILE
(--vad-model: the installed Silero weights, else SHARED/models/silero-vad/),
in a session of its own; reads the ports from its stderr line "listening
http=H tcp=T" and waits for GET /ready to answer 200.  A warm-up of W short
streams (not measured) touches the model pages in every worker.  Then, for
each N of --streams in turn, N WebSocket clients (websockets' sync client,
ping_interval=None) connect to /v1/stream, their starts staggered by 1/N s.
Each waits for the "ready" event, sends a config message (pcm_s16le,
16000 Hz), and streams the long LJ Speech file (looped if --duration exceeds
it) in real time: 100 ms binary frames of s16le, frame k sent at
t0 + (k + 1) x 0.1 s on the monotonic clock, t0 being the stream's start
(the moment its audio time 0 "was spoken"; no sleep accumulation).  After
--duration s of audio it sends {"type":"finish"} and reads until the server
closes.  Per level:

  commit latency   for every word of every final event: (the client's
                   receive time - t0) - the word's end (stream time); median
                   and p90 over all words of all clients of the level
  completed        clients that sent everything and got close 1000
  dropped          every other client: another close code, an error, no
                   close within the timeout after finish, a refused connect
  words / client   words of the finals, per client
  warnings         "warning" events received (worker_restart, ...)
  server CPU       utime + stime of every process of the server's session
                   (supervisor, gateway, workers; the supervisor's cutime +
                   cstime catch reaped children) from /proc, over the
                   level's wall time x the CPUs available
  memory           /proc/PID/smaps_rollup of every server process, sampled
                   every 5 s during each level; the largest level's sample
                   with the largest total PSS is printed

A level passes when its p90 commit latency is <= 3.5 s and no client was
dropped; the capacity is the largest passing N.  The run stops after the
first failing level.  At the end the server gets SIGTERM (it drains), is
waited for (SIGKILL to every process of its session after --stop-timeout)
and the script checks that no process of it is left.

Prints Markdown tables (progress on stderr) and writes the machine, the
configuration, the server's log warnings and every client's raw data to
bench/results/serve-<UTC time>.json (or --out).

--reference: there is no faster-whisper streaming server in this tree to run
beside sotto, so there is no side-by-side capacity; the flag says so and the
run goes on with sotto alone (see bench/README.md, "Server capacity").
"""

import argparse
import ctypes
import datetime
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import stream_bench as sb  # noqa: E402  (shared helpers: paths, percentiles, CPU check)

try:
    import websockets
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect as ws_connect
except ImportError:  # pragma: no cover
    websockets = None

AUDIO = "ljspeech-LJ001-0001_to_0032-long.wav"
RATE = 16000
FRAME_MS = 100
FRAME_BYTES = RATE * FRAME_MS // 1000 * 2
P90_LIMIT = 3.5
DEFAULT_STREAMS = "1,2,3,4,5,6,8,10,12,16,20,24,32"
LISTENING_RE = re.compile(r"listening http=(\d+) tcp=(-?\d+)")
CLOSED_BY_RE = re.compile(r"stream=(\d+): stream closed by (worker\d+)")
MEM_FIELDS = ("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty")
REFERENCE_NOTE = ("--reference: not applicable. There is no faster-whisper streaming server "
                  "in this tree to measure beside sotto serve; of the peers surveyed in "
                  "shared/reference/peer-servers.md, whisper_streaming serves one client at a "
                  "time and WhisperLive defaults to 4 clients, each with its own model copy "
                  "(bench/README.md, 'Server capacity'). Running sotto alone.")
TCK = os.sysconf("SC_CLK_TCK")
GAUGES = ("sotto_streams_active", "sotto_workers_ready", "sotto_workers_healthy",
          "sotto_real_time_factor")


def die(msg):
    print(f"serve_bench: {msg}", file=sys.stderr)
    sys.exit(2)


def warn(msg):
    print(f"serve_bench: warning: {msg}", file=sys.stderr, flush=True)


def progress(msg):
    print(f"  {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc

def proc_stat(pid):
    """(comm, state, ppid, pgrp, session, utime+stime, cutime+cstime) in ticks, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    r = s[s.rindex(")") + 2:].split()
    return (comm, r[0], int(r[1]), int(r[2]), int(r[3]), int(r[11]) + int(r[12]),
            int(r[13]) + int(r[14]))


def session_procs(sid, live_only=True):
    """{pid: stat} of every process of session sid (the server: the supervisor
    leads the session; its children move into process groups of their own
    but stay in it)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st is None or (st[4] != sid and st[3] != sid):
            continue
        if live_only and st[1] in "ZX":
            continue
        out[int(name)] = st
    return out


def role_of(pid, comm, top):
    if pid == top:
        return "supervisor"
    return comm[len("sotto-"):] if comm.startswith("sotto-") else comm


def cpu_snapshot(sid):
    """(total ticks, {pid: (role, ticks)}): utime + stime of the live processes
    of the session, plus the supervisor's cutime + cstime (children it reaped)."""
    total, per = 0, {}
    for pid, st in session_procs(sid).items():
        ticks = st[5] + (st[6] if pid == sid else 0)
        total += ticks
        per[pid] = (role_of(pid, st[0], sid), st[5])
    return total, per


def smaps_rollup(pid):
    """{field: kB} of /proc/pid/smaps_rollup, or None."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[0].endswith(":") and parts[2] == "kB":
                    out[parts[0][:-1]] = int(parts[1])
    except OSError:
        return None
    return out


def memory_sample(sid):
    procs = {}
    for pid, st in session_procs(sid).items():
        m = smaps_rollup(pid)
        if m is not None:
            procs[str(pid)] = {"role": role_of(pid, st[0], sid),
                               **{k: m.get(k, 0) for k in MEM_FIELDS}}
    return {"t": time.monotonic(), "procs": procs}


def set_subreaper():
    """Orphans of a dying supervisor are reparented to us and reaped here."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def reap_orphans(skip):
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == skip:
            continue
        st = proc_stat(int(name))
        if st is not None and st[2] == me:
            try:
                os.waitpid(int(name), os.WNOHANG)
            except ChildProcessError:
                pass


def machine_jiffies():
    """(total, idle + iowait) jiffies of all CPUs from /proc/stat, or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0)
    except (OSError, ValueError, IndexError):
        return None


def client_cpu_s():
    t = os.times()
    return t.user + t.system


# ---------------------------------------------------------------- HTTP

def http_get(port, path, timeout=5.0):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return None, ""


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        try:
            key, val = line.rsplit(" ", 1)
            out[key] = float(val)
        except ValueError:
            continue
    return out


# ---------------------------------------------------------------- the server

class Server:
    def __init__(self, cmd, env):
        self.cmd = cmd
        self.lines = []
        self.lock = threading.Lock()
        self.listening = threading.Event()
        self.http = self.tcp = None
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, env=env, start_new_session=True)
        self.pid = self.p.pid
        self.stop_info = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.p.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.lock:
                self.lines.append(line)
            m = LISTENING_RE.search(line)
            if m and not self.listening.is_set():
                self.http, self.tcp = int(m.group(1)), int(m.group(2))
                self.listening.set()
        self.listening.set()   # EOF: the server is gone

    def log(self):
        with self.lock:
            return list(self.lines)

    def start(self, timeout=60.0):
        if not self.listening.wait(timeout) or self.http is None:
            raise RuntimeError(f"no 'listening http=H tcp=T' line within {timeout:.0f} s "
                               f"(exit status {self.p.poll()}):\n" + "\n".join(self.log()[-20:]))
        if not self.wait_ready(timeout):
            raise RuntimeError(f"GET /ready did not answer 200 within {timeout:.0f} s:\n"
                               + "\n".join(self.log()[-20:]))

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                return False
            if http_get(self.http, "/ready")[0] == 200:
                return True
            time.sleep(0.2)
        return False

    def metrics(self):
        st, body = http_get(self.http, "/metrics") if self.http else (None, "")
        return parse_metrics(body) if st == 200 else {}

    def stop(self, timeout):
        """SIGTERM (a drain), wait; SIGKILL every process of the session on
        timeout; then check that none is left."""
        if self.stop_info is not None:
            return self.stop_info
        t0 = time.monotonic()
        killed = False
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except OSError:
            pass
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            killed = True
            self._kill_all()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 5
        left = session_procs(self.pid, live_only=False)
        while left and time.monotonic() < deadline:
            reap_orphans(self.pid)
            time.sleep(0.05)
            left = session_procs(self.pid, live_only=False)
        if left:
            self._kill_all()
            time.sleep(0.5)
            reap_orphans(self.pid)
            left = session_procs(self.pid, live_only=False)
        self.reader.join(5)
        self.stop_info = {"signal": "SIGTERM", "exit_status": self.p.returncode,
                          "stop_s": round(time.monotonic() - t0, 2), "sigkill_needed": killed,
                          "processes_left": {str(p): f"{st[0]} state {st[1]}"
                                             for p, st in left.items()}}
        return self.stop_info

    def _kill_all(self):
        for pid in [self.pid] + list(session_procs(self.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


# ---------------------------------------------------------------- clients

class Client:
    """One WebSocket stream: a sending thread (run) and a receiving thread."""

    def __init__(self, idx, port, pcm, duration, start_at, finish_timeout, realtime=True):
        self.idx, self.port, self.pcm, self.realtime = idx, port, pcm, realtime
        self.n_frames = int(round(duration * 1000 / FRAME_MS))
        self.start_at, self.finish_timeout = start_at, finish_timeout
        self.t0 = None
        self.ws = None
        self.stream_id = None   # the server's id, from the ready event
        self.worker = None      # the worker that closed the stream (server log)
        self.finals, self.warnings, self.errors, self.other = [], [], [], []
        self.counts = {}
        self.ready = threading.Event()
        self.closed = threading.Event()
        self.close_code = self.close_reason = self.error = None
        self.frames_sent = 0
        self.max_send_lag = 0.0
        self.finish_at = self.closed_at = None
        self.timed_out = False

    def _rx(self):
        try:
            while True:
                m = self.ws.recv()
                t = time.monotonic()
                if isinstance(m, bytes):
                    self.counts["<binary>"] = self.counts.get("<binary>", 0) + 1
                    continue
                try:
                    ev = json.loads(m)
                except ValueError:
                    ev = None
                if not isinstance(ev, dict) or not isinstance(ev.get("type"), str):
                    self.counts["<bad>"] = self.counts.get("<bad>", 0) + 1
                    self.other.append(m[:300])
                    continue
                typ = ev["type"]
                self.counts[typ] = self.counts.get(typ, 0) + 1
                if typ == "ready":
                    self.stream_id = ev.get("stream")
                    self.ready.set()
                elif typ == "final":
                    self.finals.append((t, ev))
                elif typ == "warning":
                    self.warnings.append({"t": t, **ev})
                elif typ == "error":
                    self.errors.append({"t": t, **ev})
        except ConnectionClosed as e:
            self.close_code = e.rcvd.code if e.rcvd is not None else 1006
            self.close_reason = e.rcvd.reason if e.rcvd is not None else ""
        except Exception as e:  # noqa: BLE001
            self.error = f"receive: {e!r}"
        finally:
            self.closed_at = time.monotonic()
            self.closed.set()
            self.ready.set()

    def run(self):
        delay = self.start_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            self.ws = ws_connect(f"ws://127.0.0.1:{self.port}/v1/stream", open_timeout=15,
                                 close_timeout=10, max_size=None, compression=None,
                                 ping_interval=None, proxy=None)
        except TypeError:   # websockets < 15 has no proxy argument
            try:
                self.ws = ws_connect(f"ws://127.0.0.1:{self.port}/v1/stream", open_timeout=15,
                                     close_timeout=10, max_size=None, compression=None,
                                     ping_interval=None)
            except Exception as e:  # noqa: BLE001
                self.error = f"connect: {e!r}"
                self.closed.set()
                return
        except Exception as e:  # noqa: BLE001
            self.error = f"connect: {e!r}"
            self.closed.set()
            return
        threading.Thread(target=self._rx, daemon=True).start()
        if not self.ready.wait(15) or self.closed.is_set():
            if not self.closed.is_set():
                self.error = "no ready event within 15 s"
                self._abort()
            return
        try:
            self.ws.send(json.dumps({"type": "config", "format": "pcm_s16le",
                                     "sample_rate": RATE}))
            self.t0 = time.monotonic()
            for k in range(self.n_frames):
                due = self.t0 + (k + 1) * FRAME_MS / 1000
                d = due - time.monotonic() if self.realtime else 0.0
                if d > 0:
                    time.sleep(d)
                else:
                    self.max_send_lag = max(self.max_send_lag, -d)
                off = k * FRAME_BYTES
                self.ws.send(self.pcm[off:off + FRAME_BYTES])
                self.frames_sent += 1
            self.ws.send(json.dumps({"type": "finish"}))
            self.finish_at = time.monotonic()
        except ConnectionClosed:
            pass    # the receiving thread has the close code
        except Exception as e:  # noqa: BLE001
            self.error = f"send: {e!r}"
        if not self.closed.wait(self.finish_timeout):
            self.timed_out = True
            self._abort()

    def _abort(self):
        try:
            self.ws.close(code=1001)
        except Exception:  # noqa: BLE001
            pass
        self.closed.wait(10)

    # -- results
    def latencies(self):
        out = []
        if self.t0 is None:
            return out
        for t, ev in self.finals:
            for w in ev.get("words") or []:
                end = sb._num(w.get("end")) if isinstance(w, dict) else None
                if end is not None:
                    out.append(t - self.t0 - end)
        return out

    def words(self):
        return sum(len(ev.get("words") or []) for _, ev in self.finals)

    def dropped_why(self):
        if self.error:
            return self.error
        if self.timed_out:
            return f"no close within {self.finish_timeout:.0f} s after finish"
        if self.frames_sent < self.n_frames or self.finish_at is None:
            return (f"closed {self.close_code} {self.close_reason!r} after "
                    f"{self.frames_sent * FRAME_MS / 1000:.1f} s of audio, before finish")
        if self.close_code != 1000:
            return f"close {self.close_code} {self.close_reason!r}"
        return None

    def record(self):
        t0 = self.t0 or 0.0
        return {
            "client": self.idx,
            "stream_id": self.stream_id, "worker": self.worker,
            "completed": self.dropped_why() is None,
            "commit_latency_median_s": sb.percentile(self.latencies(), 50),
            "commit_latency_p90_s": sb.percentile(self.latencies(), 90),
            "dropped_why": self.dropped_why(),
            "close_code": self.close_code, "close_reason": self.close_reason,
            "error": self.error, "timed_out": self.timed_out,
            "audio_sent_s": self.frames_sent * FRAME_MS / 1000,
            "max_send_lag_s": round(self.max_send_lag, 3),
            "close_after_finish_s": (round(self.closed_at - self.finish_at, 3)
                                     if self.finish_at and self.closed_at else None),
            "words": self.words(),
            "event_counts": self.counts,
            "latencies_s": [round(x, 3) for x in self.latencies()],
            "finals": [{"recv_s": round(t - t0, 3), "utterance": ev.get("utterance"),
                        "text": ev.get("text"),
                        "words": [[w.get("text"), w.get("start"), w.get("end")]
                                  for w in ev.get("words") or [] if isinstance(w, dict)]}
                       for t, ev in self.finals],
            "warnings": [{**w, "t": round(w["t"] - t0, 3)} for w in self.warnings],
            "errors": [{**e, "t": round(e["t"] - t0, 3)} for e in self.errors],
            "bad_messages": self.other[:20],
        }


def run_clients(port, n, pcm, duration, finish_timeout, realtime=True):
    """n clients, started 1/n s apart when real time (at once otherwise)."""
    base = time.monotonic() + 0.2
    clients = [Client(i, port, pcm, duration, base + (i / n if realtime else 0),
                      finish_timeout, realtime) for i in range(n)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for t in threads:
        t.start()
    return clients, threads


# ---------------------------------------------------------------- one level

def run_level(srv, n, args, pcm):
    if not srv.wait_ready(60):
        raise RuntimeError(f"/ready is not 200 before the level of {n} streams:\n"
                           + "\n".join(srv.log()[-20:]))
    busy = sb.cpu_busy()
    if busy is not None and busy > 0.2:
        warn(f"CPUs {100 * busy:.0f}% busy before the level of {n} streams (server idle): "
             "other work on this machine inflates latency and CPU numbers")
    m0 = srv.metrics()
    cpu0, per0 = cpu_snapshot(srv.pid)
    ccpu0 = client_cpu_s()
    mj0 = machine_jiffies()
    log_from = len(srv.log())
    t0 = time.monotonic()
    finish_timeout = max(30.0, args.duration)
    clients, threads = run_clients(srv.http, n, pcm, args.duration, finish_timeout)
    samples = []
    end_by = t0 + 1.5 + args.duration + finish_timeout + 30
    next_sample = t0 + 5
    while any(t.is_alive() for t in threads) and time.monotonic() < end_by:
        if time.monotonic() >= next_sample:
            samples.append(memory_sample(srv.pid))
            next_sample += args.mem_interval
        time.sleep(0.2)
    hung = [c.idx for c, t in zip(clients, threads) if t.is_alive()]
    wall = time.monotonic() - t0
    cpu1, per1 = cpu_snapshot(srv.pid)
    ccpu1 = client_cpu_s()
    mj1 = machine_jiffies()
    m1 = srv.metrics()
    for c in clients:
        if c.idx in hung and c.error is None:
            c.error = "client thread did not finish"
    # which worker ran each stream: "stream=ID: stream closed by workerK"
    closed_by = {}
    for line in srv.log()[log_from:]:
        m = CLOSED_BY_RE.search(line)
        if m:
            closed_by[int(m.group(1))] = m.group(2)
    per_worker = {}
    for c in clients:
        c.worker = closed_by.get(c.stream_id)
        if c.worker:
            per_worker[c.worker] = per_worker.get(c.worker, 0) + 1

    lat = [x for c in clients for x in c.latencies()]
    recs = [c.record() for c in clients]
    completed = sum(1 for r in recs if r["completed"])
    dropped = n - completed
    p50, p90 = sb.percentile(lat, 50), sb.percentile(lat, 90)
    ok = p90 is not None and p90 <= P90_LIMIT and dropped == 0
    why = []
    if p90 is None:
        why.append("no words committed")
    elif p90 > P90_LIMIT:
        why.append(f"p90 {p90:.2f} s > {P90_LIMIT} s")
    if dropped:
        why.append(f"{dropped} dropped")
    cores = len(os.sched_getaffinity(0))
    cpu_s = (cpu1 - cpu0) / TCK
    by_role = {}
    for pid, (role, ticks) in per1.items():
        d = ticks - per0.get(pid, (role, 0))[1]
        by_role[role] = round(by_role.get(role, 0) + d / TCK, 2)
    delta = {k: round(v - m0.get(k, 0.0), 6) for k, v in m1.items()
             if not k.startswith(("sotto_inference_seconds_bucket",
                                  "sotto_commit_latency_seconds_bucket") + GAUGES)}
    machine = (100 * (1 - (mj1[1] - mj0[1]) / (mj1[0] - mj0[0]))
               if mj0 and mj1 and mj1[0] > mj0[0] else None)
    audio_s = delta.get("sotto_audio_seconds_total")
    srv_commit = (delta.get("sotto_commit_latency_seconds_sum", 0) /
                  delta["sotto_commit_latency_seconds_count"]
                  if delta.get("sotto_commit_latency_seconds_count") else None)
    level = {
        "streams": n, "pass": ok, "fail_why": why,
        "commit_latency_median_s": p50, "commit_latency_p90_s": p90,
        "commit_latency_max_s": max(lat) if lat else None,
        "words_committed": len(lat),
        "completed": completed, "dropped": dropped,
        "words_per_client": [r["words"] for r in recs],
        "warnings": sum(len(c.warnings) for c in clients),
        "errors": sum(len(c.errors) for c in clients),
        "close_codes": [r["close_code"] for r in recs],
        "wall_s": round(wall, 2),
        "server_cpu_s": round(cpu_s, 2),
        "server_cpu_pct_of_cores": 100 * cpu_s / (wall * cores),
        "server_cpu_s_by_role": by_role,
        "worker_busy_pct_of_threads": {r: 100 * v / (wall * args.threads)
                                       for r, v in by_role.items() if r.startswith("worker")},
        "streams_per_worker": per_worker,
        "server_cpu_s_per_audio_s": (cpu_s / audio_s if audio_s else None),
        "client_cpu_pct_of_cores": 100 * (ccpu1 - ccpu0) / (wall * cores),
        "machine_cpu_busy_pct": machine,
        "server_rtf": (delta.get("sotto_compute_seconds_total", 0) / audio_s
                       if audio_s else None),
        "cores": cores,
        "cpu_busy_before": busy,
        "server_commit_latency_mean_s": srv_commit,
        "max_send_lag_s": max((c.max_send_lag for c in clients), default=0.0),
        "metrics_delta": delta,
        "metrics_gauges_after": {k: v for k, v in m1.items() if k.startswith(GAUGES)},
        "memory_samples": samples,
        "clients": recs,
    }
    return level


def fmt(v, spec="{:.2f}"):
    return "-" if v is None else spec.format(v)


def mib(kb):
    return f"{kb / 1024:.0f}"


def model_bytes(model):
    total = 0
    for root, _, files in os.walk(model):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def vad_args(sotto, shared):
    """--vad-model: the installed Silero weights, else the shared copy."""
    try:
        p = subprocess.run([sotto, "model", "path", "silero-vad"], capture_output=True,
                           text=True, timeout=30)
        d = p.stdout.strip()
        if p.returncode == 0 and d:
            f = d if os.path.isfile(d) else os.path.join(d, sb.VAD_FILE)
            if os.path.isfile(f):
                return ["--vad-model", f]
    except (OSError, subprocess.SubprocessError):
        pass
    f = os.path.join(shared, "models", "silero-vad", sb.VAD_FILE)
    if os.path.isfile(f):
        return ["--vad-model", f]
    die("no Silero VAD weights: neither `sotto model path silero-vad` nor "
        f"{f} exists")


def load_pcm(path, duration):
    with wave.open(path, "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != RATE:
            die(f"{path}: expected mono 16-bit {RATE} Hz, got {w.getnchannels()} ch, "
                f"{8 * w.getsampwidth()} bit, {w.getframerate()} Hz")
        raw = w.readframes(w.getnframes())
    file_s = len(raw) / 2 / RATE
    need = int(round(duration * 1000 / FRAME_MS)) * FRAME_BYTES
    if len(raw) < need:
        raw = raw * math.ceil(need / len(raw))
    return raw[:need], file_s


def memory_table(level):
    """The sample of the level with the largest total PSS, as table rows."""
    samples = level.get("memory_samples") or []
    if not samples:
        return None, []
    best = max(samples, key=lambda s: sum(p["Pss"] for p in s["procs"].values()))
    order = {"supervisor": 0, "gateway": 1}
    rows = sorted(best["procs"].items(),
                  key=lambda kv: (order.get(kv[1]["role"], 2), kv[1]["role"]))
    return best, rows


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description="Capacity benchmark of sotto serve")
    ap.add_argument("--sotto", default=os.path.join("build", "sotto"))
    ap.add_argument("--model", default=None,
                    help="model dir (default: $SOTTO_MODEL, `SOTTO model path tiny.en`)")
    ap.add_argument("--shared", default=sb.default_shared(),
                    help="dir holding audio/manifest.tsv (default: $SOTTO_SHARED, ./shared, "
                         "../shared, /work/shared)")
    ap.add_argument("--workers", type=int, default=2, help="engine processes (--workers)")
    ap.add_argument("--threads", type=int, default=1, help="inference threads per worker")
    ap.add_argument("--streams", default=DEFAULT_STREAMS,
                    help=f"concurrent streams per level, in order (default {DEFAULT_STREAMS})")
    ap.add_argument("--duration", type=float, default=120.0,
                    help="seconds of audio per stream (the file is looped if needed)")
    ap.add_argument("--mem-interval", type=float, default=5.0,
                    help="seconds between memory samples")
    ap.add_argument("--stop-timeout", type=float, default=30.0,
                    help="seconds to wait for the server after SIGTERM before SIGKILL")
    ap.add_argument("--out", default=None,
                    help="results file (default bench/results/serve-<timestamp>.json)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: one level of 2 streams for 30 s")
    ap.add_argument("--reference", action="store_true",
                    help="not applicable: no faster-whisper server to compare with; says so "
                         "and runs sotto alone")
    args = ap.parse_args()

    if websockets is None:
        die("the Python package websockets is needed (pip install websockets)")
    if args.quick:
        args.streams, args.duration = "2", 30.0
    try:
        levels = [int(x) for x in args.streams.split(",") if x.strip()]
    except ValueError:
        die(f"--streams {args.streams!r}: expected comma-separated integers")
    if not levels or min(levels) < 1 or args.duration <= 0 or args.workers < 1 \
            or args.threads < 1:
        die("--streams, --workers and --threads must be >= 1, --duration > 0")
    if args.reference:
        print(f"serve_bench: {REFERENCE_NOTE}", file=sys.stderr)
    if not os.access(args.sotto, os.X_OK):
        die(f"{args.sotto} is not an executable (build it with make)")
    if args.model is None:
        args.model = sb.default_model(args.sotto)
    if not args.model or not os.path.isdir(args.model):
        die(f"model dir {args.model!r} not found: pass --model DIR or set SOTTO_MODEL")
    if not args.shared:
        die("no shared dir: pass --shared DIR or set SOTTO_SHARED")
    audio_dir = sb.find_audio_dir(args.shared)
    if AUDIO not in sb.read_refs(audio_dir):
        die(f"{AUDIO} is not in {audio_dir}/manifest.tsv")
    audio_path = os.path.join(audio_dir, AUDIO)
    pcm, file_s = load_pcm(audio_path, args.duration)

    set_subreaper()
    t_start = time.monotonic()
    state_dir = tempfile.mkdtemp(prefix="sotto-serve-bench-")
    cmd = [args.sotto, "serve", "--model", args.model, "--http-port", "0", "--tcp-port", "0",
           "--vosk-port", "-1", "--whisperlive-port", "-1", "--wyoming-port", "-1",
           "--workers", str(args.workers), "--threads", str(args.threads),
           "--state-dir", state_dir, "--max-streams", str(max(64, max(levels))),
           *vad_args(args.sotto, args.shared)]
    env = dict(os.environ)
    busy0 = sb.cpu_busy()
    if busy0 is not None and busy0 > 0.2:
        warn(f"CPUs {100 * busy0:.0f}% busy before the start: other work on this machine "
             "inflates every number here")

    # SIGTERM to us: stop the server on the way out
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    progress("starting: " + " ".join(cmd))
    srv = Server(cmd, env)
    results, failures, warmup = [], [], None
    interrupted = False
    try:
        srv.start()
        progress(f"listening http={srv.http} tcp={srv.tcp}, ready")
        # warm-up (not measured): one stream of 8 s per worker, sent at once,
        # so that every worker has touched the model's pages
        wsec = min(8.0, args.duration)
        wclients, wthreads = run_clients(srv.http, args.workers, pcm, wsec, 60.0,
                                         realtime=False)
        for t in wthreads:
            t.join(120)
        warmup = [c.record() for c in wclients]
        for c in wclients:
            progress(f"warm-up stream {c.idx}: {c.words()} words, close {c.close_code}")

        for n in levels:
            progress(f"level: {n} stream(s) x {args.duration:.0f} s ...")
            lv = run_level(srv, n, args, pcm)
            results.append(lv)
            progress(f"  {n} streams: p50 {fmt(lv['commit_latency_median_s'])} s, p90 "
                     f"{fmt(lv['commit_latency_p90_s'])} s, completed {lv['completed']}, "
                     f"dropped {lv['dropped']}, server CPU "
                     f"{lv['server_cpu_pct_of_cores']:.0f}% -> "
                     f"{'pass' if lv['pass'] else 'FAIL (' + '; '.join(lv['fail_why']) + ')'}")
            for r in lv["clients"]:
                if not r["completed"]:
                    progress(f"    client {r['client']} dropped: {r['dropped_why']}")
            if not lv["pass"]:
                break
    except KeyboardInterrupt:
        interrupted = True
        failures.append("interrupted")
        warn("interrupted: stopping the server")
    except RuntimeError as e:
        failures.append(str(e).splitlines()[0])
        warn(str(e))
    finally:
        stop = srv.stop(args.stop_timeout)
        try:
            os.rmdir(state_dir)
        except OSError:
            pass   # crash records left there: keep them
    if stop["processes_left"]:
        failures.append(f"processes left after stop: {stop['processes_left']}")
    if stop["sigkill_needed"]:
        failures.append("the server needed SIGKILL to stop")
    log = srv.log()
    log_issues = [ln for ln in log if " WARN " in ln or " ERROR " in ln or "FATAL" in ln]

    # ---- report
    cores = len(os.sched_getaffinity(0))
    try:
        import bench  # machine description, shared with bench.py
        info = bench.machine_info(args)
    except Exception as e:  # noqa: BLE001
        info = {"error": f"{type(e).__name__}: {e}"}
    info["cpu_count"] = os.cpu_count()
    info["websockets"] = getattr(websockets, "__version__", None)
    model_mb = model_bytes(args.model) / 2**20

    print(f"\nsotto serve capacity: {os.path.basename(os.path.normpath(args.model))} "
          f"({model_mb:.0f} MiB of model files), {args.workers} worker(s) x {args.threads} "
          f"thread(s), {cores} CPU(s) ({info.get('cpu', '?')}); each stream plays {AUDIO} "
          f"({file_s:.1f} s{', looped' if args.duration > file_s else ''}) for "
          f"{args.duration:.0f} s in real time, {FRAME_MS} ms frames\n")
    print("| streams | commit p50 (s) | commit p90 (s) | completed | dropped | words / client "
          "| warnings | server CPU % | machine CPU % | pass |")
    print("|---:|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for lv in results:
        wpc = lv["words_per_client"]
        wtxt = (f"{min(wpc)}" if min(wpc) == max(wpc) else f"{min(wpc)}-{max(wpc)}") if wpc \
            else "-"
        print(f"| {lv['streams']} | {fmt(lv['commit_latency_median_s'])} | "
              f"{fmt(lv['commit_latency_p90_s'])} | {lv['completed']} | {lv['dropped']} | "
              f"{wtxt} | {lv['warnings']} | {lv['server_cpu_pct_of_cores']:.0f} | "
              f"{fmt(lv['machine_cpu_busy_pct'], '{:.0f}')} | "
              f"{'✓' if lv['pass'] else '✗ ' + '; '.join(lv['fail_why'])} |")
    print(f"\ncommit latency: (receive time - stream start) - word end, over every word of "
          f"every final of every client; pass: p90 <= {P90_LIMIT} s and no client dropped; "
          f"server CPU: utime + stime of all server processes / (wall x {cores} cores); "
          "machine CPU: all CPUs' busy time from /proc/stat over the level (server, this "
          "client and anything else).")

    mem_level = max(results, key=lambda lv: lv["streams"]) if results else None
    mem_doc = None
    if mem_level is not None:
        best, rows = memory_table(mem_level)
        if rows:
            print(f"\nmemory during the level of {mem_level['streams']} streams "
                  "(/proc/PID/smaps_rollup; the sample with the largest total PSS), MiB:\n")
            spw = mem_level.get("streams_per_worker") or {}
            print("| process | pid | streams | RSS | PSS | Shared_Clean | Private_Dirty |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for pid, p in rows:
                ns = spw.get(p["role"], 0) if p["role"].startswith("worker") else ""
                print(f"| {p['role']} | {pid} | {ns} | {mib(p['Rss'])} | {mib(p['Pss'])} | "
                      f"{mib(p['Shared_Clean'])} | {mib(p['Private_Dirty'])} |")
            tot = {k: sum(p[k] for _, p in rows) for k in MEM_FIELDS}
            print(f"| all | | {mem_level['streams']} | {mib(tot['Rss'])} | {mib(tot['Pss'])} | "
                  f"{mib(tot['Shared_Clean'])} | {mib(tot['Private_Dirty'])} |")
            print("\nPSS charges each shared page to its processes in equal parts: a "
                  "worker's PSS well below its RSS is the model mapped once for all.")
            mem_doc = {"streams": mem_level["streams"], "sample": best, "total_kb": tot}

    passing = [lv["streams"] for lv in results if lv["pass"]]
    capacity = max(passing) if passing else 0
    first_fail = next((lv for lv in results if not lv["pass"]), None)
    max_busy = min(args.workers * args.threads, cores) / cores
    if first_fail is not None:
        c = first_fail["server_cpu_pct_of_cores"]
        limit = (f"at {first_fail['streams']} streams (the first failing level: "
                 f"{'; '.join(first_fail['fail_why'])}) the server used {c:.0f} % of the "
                 f"{cores} cores (this client {first_fail['client_cpu_pct_of_cores']:.0f} %); "
                 f"{args.workers} worker(s) x {args.threads} thread(s) can keep at most "
                 f"{100 * max_busy:.0f} % busy")
        mach = first_fail["machine_cpu_busy_pct"]
        busy = first_fail["worker_busy_pct_of_threads"]
        top = max(busy, key=busy.get) if busy else None
        cost = first_fail["server_cpu_s_per_audio_s"]
        cost_txt = (f"; a stream costs {cost:.2f} CPU-s per s of audio" if cost else "")
        if c >= 0.9 * 100 * max_busy:
            limit += ": the cores are saturated, the limit is CPU" + cost_txt
        elif top is not None and busy[top] >= 90:
            spw = first_fail["streams_per_worker"]
            limit += (f"; but {top}, with {spw.get(top, '?')} of the streams, was "
                      f"{busy[top]:.0f} % busy on its {args.threads} thread(s) (streams per "
                      f"worker: {', '.join(f'{k} {v}' for k, v in sorted(spw.items()))}): the "
                      "limit is per worker, since a stream stays on one worker, which runs one "
                      "inference at a time" + cost_txt)
        elif mach is not None and mach >= 90:
            limit += (f"; the machine as a whole was {mach:.0f} % busy: the cores were "
                      "saturated, partly by other processes, so this number understates "
                      "the capacity of an idle machine")
        else:
            limit += (f"; the machine as a whole was "
                      f"{'?' if mach is None else f'{mach:.0f}'} % busy: the cores were not "
                      "saturated, so CPU alone is not the limit")
    elif results:
        last = results[-1]
        limit = (f"no level failed; at {last['streams']} streams (the largest run) the server "
                 f"used {last['server_cpu_pct_of_cores']:.0f} % of the {cores} cores"
                 + (f" (a stream costs {last['server_cpu_s_per_audio_s']:.2f} CPU-s per s of "
                    "audio)" if last["server_cpu_s_per_audio_s"] else "")
                 + ": the capacity is at least that, run more --streams to find the limit")
    else:
        limit = "no level was run"
    if results:
        print(f"\ncapacity: {capacity} concurrent real-time stream(s) "
              f"(the largest level with p90 commit latency <= {P90_LIMIT} s and no drop)")
        print(f"limit: {limit}")
    print(f"server stop: SIGTERM, exit status {stop['exit_status']} after {stop['stop_s']} s"
          f"{', SIGKILL needed' if stop['sigkill_needed'] else ''}; processes left: "
          f"{'none' if not stop['processes_left'] else stop['processes_left']}")
    if log_issues:
        print(f"server log: {len(log_issues)} WARN/ERROR line(s), first: {log_issues[0]}")
    if args.reference:
        print(f"reference: {REFERENCE_NOTE}")

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_path = args.out or os.path.join(HERE, "results", f"serve-{stamp}.json")
    doc = {
        "machine": {**info, "cpus_available": cores, "cpu_busy_before": busy0},
        "config": {"sotto": args.sotto, "model": os.path.abspath(args.model),
                   "model_files_mb": round(model_mb, 1), "audio": audio_path,
                   "audio_file_s": file_s, "duration_s": args.duration,
                   "looped": args.duration > file_s, "frame_ms": FRAME_MS,
                   "workers": args.workers, "threads": args.threads, "streams": levels,
                   "quick": args.quick, "stagger_s": "1/N per client",
                   "pass_rule": f"p90 commit latency <= {P90_LIMIT} s and no client dropped",
                   "command": cmd},
        "reference": {"applicable": False, "note": REFERENCE_NOTE,
                      "asked": args.reference},
        "total_s": round(time.monotonic() - t_start, 1),
        "capacity_streams": capacity if results else None,
        "limit": limit,
        "failures": failures,
        "server": {"pid": srv.pid, "http_port": srv.http, "tcp_port": srv.tcp,
                   "stop": stop, "log_warnings": log_issues[:200],
                   "log_lines": len(log), "log_tail": log[-60:]},
        "memory": mem_doc,
        "warmup": warmup,
        "levels": results,
    }
    sb.write_results(out_path, doc)
    if failures:
        print(f"serve_bench: failures: {'; '.join(failures)}", file=sys.stderr)
        return 130 if interrupted else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
