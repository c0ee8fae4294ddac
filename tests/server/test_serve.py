#!/usr/bin/env python3
"""Integration tests of `sotto serve`: the real server, real model, real speech.

Usage:
    test_serve.py --sotto build/sotto --model DIR --shared ../shared
                  [--quick] [--only a,b,...] [--verbose] [--server-log]

Each test starts its own server as a subprocess in a new session (so the
supervisor leads a session and a process group of its own):

    SOTTO serve --model DIR [--vad-model FILE] --http-port 0 --tcp-port 0
                --workers 2 --state-dir TMP --max-ahead 10000 [flags]

waits for the stderr line "listening http=H tcp=T", polls GET /ready until
it answers 200, runs its checks, and stops the server with SIGTERM (SIGKILL
after a timeout).  Every test then checks that no process of the server is
left: os.killpg(supervisor, 0) fails, and no process of the supervisor's
session remains (the gateway and the workers move into process groups of
their own, see child_enter() in src/server/supervisor.c, but stay in the
session).  This script makes itself a child subreaper, so that server
processes orphaned by a dying supervisor are reparented to it and reaped
here (PID 1 of a container may not reap them, and a zombie still counts as
a member of its group).

Tests (all run in both modes; --quick runs 20 abrupt clients in d instead
of 200, and streams the manifest's sentence-length files joined (67 s) in g
instead of the long LJ Speech file (229 s); h always uses the joined files):
  a  TCP (whisper_streaming protocol): jfk.wav, lines, times, WER
  b  WebSocket, pcm_s16le 16 kHz: events, seq, words, WER, close 1000
  c  WebSocket, pcm_f32le 48 kHz
  d  abrupt TCP clients (RST, FIN, half-close): no leak, still serves
  e  WebSocket garbage: 1009, 1007, 1002, bad JSON, unknown type, vanishing
     peer, a config refused for one field
  f  overload: --max-streams 2 refuses the third stream (1013, TCP close)
  g  a worker SIGKILLed mid-stream: warning, same transcript, metrics; and
     every worker killed late in one long utterance: no word lost
  h  a worker SIGSTOPped mid-stream: the watchdog kills it, same transcript;
     and, with fault injection, a worker that hangs inside an inference while
     its heartbeat goes on: killed after --inference-timeout, same transcript
  i  a model that does not load: fatal, no respawn, /ready 503; and, with
     a build that has fault injection (-DSOTTO_FAULT_INJECTION), workers
     that crash on every stream: the crash-loop breaker (skipped otherwise);
     in any build, a worker SIGKILLed each time it comes back trips the
     breaker on the fourth death (--crash-loop-deaths 3): /ready
     crash_loop, no respawn, /health 200
  j  SIGTERM drains: finals, close 1001, exit 0, ports reusable at once; a
     raw TCP stream running beside it gets its lines and EOF; while it
     drains /ready is 503 "draining" and a new WebSocket gets close 1001;
     a second SIGTERM during a drain ends every process at once, status 1
  k  the supervisor SIGKILLed: every child dies with it
  l  WebSocket, opus: 20 ms packets encoded with libopus (ctypes) are
     decoded in the worker; malformed packets get an error event each and
     the stream goes on to the same transcript
  m  --idle-timeout 2: a WebSocket client and a TCP client that go quiet
     mid-stream get their words flushed, then the close (1008 "idle
     timeout" on WebSocket, EOF after the last line on TCP)

Every line of output is "ok NAME" or "FAIL NAME: why" (with the tail of the
server's stderr after a failure), then a summary.  Exit status: 0 all checks
passed, 1 a check failed, 2 usage/setup error.
"""
import argparse
import csv
import ctypes
import ctypes.util
import difflib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import wave

# numpy and websockets are needed by the tests here, not by the Server
# class and the reporting, which test_browser.py (run with Debian's
# /usr/bin/python3, that may lack them) imports from this file.
try:
    import numpy as np
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect as ws_connect
    IMPORT_ERROR = None
except ImportError as e:  # pragma: no cover
    np = ConnectionClosed = ws_connect = None
    IMPORT_ERROR = f"{e} (pip install websockets numpy)"

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "golden"))
import textnorm  # noqa: E402

JFK = "jfk.wav"
LONG = "ljspeech-LJ001-0001_to_0032-long.wav"
# One 10-second utterance without a pause (28 words).
UTTERANCE = "librispeech-test-clean-1089-134686-0000.wav"
RATE = 16000
LISTENING_RE = re.compile(r"listening http=(\d+) tcp=(-?\d+)"
                          r"(?: vosk=(-?\d+) whisperlive=(-?\d+) wyoming=(-?\d+))?")
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|"
                          r"runtime error: |WARNING: ThreadSanitizer")
ROLE_RE = re.compile(r"\b(gateway|supervisor|worker\d+)\[(\d+)\]")
LINE_RE = re.compile(r"^(\d+) (\d+) (.+)$")

ARGS = None
AUDIO = {}          # name -> (int16 numpy array at 16 kHz, reference text)
RESULTS = []        # (name, ok)
CURRENT = []        # servers running now, for stderr tails on failure
STARTED = []        # servers the running test started, stopped or not
OUR_SERVERS = set() # pids of supervisors started here (Popen reaps them)


# ---- reporting ------------------------------------------------------------

def check(name, cond, detail="", servers=None):
    """Records one check; on failure prints why and the stderr of the
    servers running now (or of `servers`)."""
    RESULTS.append((name, bool(cond)))
    if cond:
        print(f"ok {name}" + (f" ({detail})" if detail and ARGS.verbose else ""),
              flush=True)
        return True
    print(f"FAIL {name}: {detail}", flush=True)
    for srv in CURRENT if servers is None else servers:
        tail = srv.stderr_tail(40)
        print(f"  --- stderr of the server {srv.name} (pid {srv.pid}), last "
              f"{len(tail)} lines ---")
        for line in tail:
            print("  | " + line)
    sys.stdout.flush()
    return False


def accuracy_check(name, cond, detail=""):
    """A check of the transcript around a worker restart.  In --quick mode
    (what sanitized builds run) it is reported as a note instead: there the
    workers run 5 to 20 times slower, so the point where the kill lands in
    the audio moves from run to run, and tiny.en may transcribe the
    replayed piece of an utterance a few words differently.  The plain
    build's full run asserts it."""
    if ARGS.quick:
        note(f"{name}: {'ok' if cond else 'NOT MET (not asserted in --quick)'}")
        if not cond and detail:
            note(detail[:400])
    else:
        check(name, cond, detail)


def note(msg):
    print(f"  note: {msg}", flush=True)


# ---- processes ------------------------------------------------------------

def set_subreaper():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            note("cannot become a child subreaper; orphan zombies may linger")
    except OSError:
        note("cannot load libc for prctl")


def proc_stat(pid):
    """(state, ppid, pgrp, utime+stime in ticks, session) of pid, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return (rest[0], int(rest[1]), int(rest[2]), int(rest[11]) + int(rest[12]),
            int(rest[3]))


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def group_procs(sid, live_only=True):
    """{pid: (state, ppid, cpu)} of the server's processes: those of session
    sid.  The supervisor leads the session (start_new_session) and its own
    process group; each child moves into a process group of its own
    (setpgid in supervisor.c's child_enter), but stays in the session."""
    out = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st is None or (st[4] != sid and st[2] != sid):
            continue
        if live_only and st[0] in "ZX":
            continue
        out[pid] = (st[0], st[1], st[3])
    return out


def reap_orphans():
    """Reaps processes reparented to us (we are a subreaper), except the
    supervisors, which their Popen objects reap."""
    me = os.getpid()
    for pid in all_pids():
        if pid in OUR_SERVERS:
            continue
        st = proc_stat(pid)
        if st is None or st[1] != me:
            continue
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def group_gone(pgid):
    """Whether no process of the server is left: none in the supervisor's
    process group (os.killpg(pgid, 0) fails), and none in its session (the
    children's own process groups), zombies included."""
    reap_orphans()
    try:
        os.killpg(pgid, 0)
        return False
    except ProcessLookupError:
        pass
    except PermissionError:
        return False
    return not group_procs(pgid, live_only=False)


def wait_group_gone(pgid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if group_gone(pgid):
            return True
        time.sleep(0.05)
    return group_gone(pgid)


def tcp_sockets(pid="self"):
    """{inode: (local port, remote port, state)} of the TCP sockets in the
    network namespace of pid, from /proc/PID/net/tcp and tcp6 (state in
    hex: "0A" listening, "01" established)."""
    out = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                next(f)
                for line in f:
                    fld = line.split()
                    out[fld[9]] = (int(fld[1].rsplit(":", 1)[1], 16),
                                   int(fld[2].rsplit(":", 1)[1], 16), fld[3])
        except OSError:
            pass
    return out


def proc_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def vm_size_kb(pid):
    """The address space a process maps (VmSize), in KiB: what RLIMIT_AS
    counts."""
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmSize:"):
                return int(ln.split()[1])
    raise OSError(f"no VmSize for {pid}")


def proc_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def installed_vad():
    base = os.environ.get("XDG_DATA_HOME")
    if not base or not base.startswith("/"):
        base = os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "sotto", "models", "silero-vad",
                        "silero_vad_16k.safetensors")


# ---- Ogg surgery (hostile and lying files) ----------------------------------

def ogg_crc(data):
    """The Ogg page CRC: CRC-32, polynomial 0x04c11db7, not reflected,
    initial value 0, over the page with its CRC field zeroed."""
    crc = 0
    for b in data:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def ogg_pages(data):
    """[(offset, header length, body length)] of each page."""
    pages, at = [], 0
    while at + 27 <= len(data) and data[at:at + 4] == b"OggS":
        nseg = data[at + 26]
        lace = data[at + 27:at + 27 + nseg]
        hlen = 27 + nseg
        pages.append((at, hlen, sum(lace)))
        at += hlen + sum(lace)
    return pages


def ogg_fix_crc(b, off, n):
    """b (a bytearray) with the CRC of the n-byte page at off recomputed;
    returns bytes."""
    b[off + 22:off + 26] = b"\0\0\0\0"
    b[off + 22:off + 26] = struct.pack("<I", ogg_crc(bytes(b[off:off + n])))
    return bytes(b)


class Server:
    """One `sotto serve` run: the subprocess, its stderr, its ports."""

    def __init__(self, extra=(), model=None, http_port=0, tcp_port=0,
                 workers=2, env=None, wait_ready=True, name="server", raw_ports=True,
                 ready_headers=None, ssl_context=None, nofile=None):
        self.state_dir = tempfile.mkdtemp(prefix="sotto-serve-test-")
        self.cmd = [getattr(ARGS, "server_sotto", "") or ARGS.sotto, "serve", "--model", model or ARGS.model]
        if not os.path.exists(installed_vad()):
            self.cmd += ["--vad-model", os.path.join(
                ARGS.shared, "models", "silero-vad",
                "silero_vad_16k.safetensors")]
        # The dialects' own ports are ephemeral too, so that servers run
        # side by side (a test may pass its own in extra).
        # raw_ports False leaves the raw TCP ports (whisper_streaming,
        # Wyoming) to the server's own defaults (off with an API key).
        self.cmd += ["--vosk-port", "0", "--whisperlive-port", "0"]
        if raw_ports:
            self.cmd += ["--wyoming-port", "0", "--tcp-port", str(tcp_port)]
        self.cmd += ["--http-port", str(http_port),
                     "--workers", str(workers), "--state-dir", self.state_dir,
                     "--max-ahead", "10000"] + list(extra)
        self.name = name
        self.ready_headers = ready_headers or {}
        self.ssl_context = ssl_context
        self.lines = []
        self.lock = threading.Lock()
        self.listening = threading.Event()
        self.http = self.tcp = self.vosk = self.whisperlive = self.wyoming = None
        self.roles = {}     # role -> pid, the latest seen in the log
        self.stopped = False
        e = dict(os.environ)
        if env:
            e.update(env)
        # nofile: the server's RLIMIT_NOFILE, soft and hard (ulimit -n).
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) \
            if nofile else None
        self.p = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, env=e,
                                  start_new_session=True, preexec_fn=limit)
        self.pid = self.pgid = self.p.pid
        OUR_SERVERS.add(self.pid)
        CURRENT.append(self)
        STARTED.append(self)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.listening.wait(60):
            raise RuntimeError(
                f"{name}: no 'listening http=H tcp=T' line within 60 s "
                f"(exit status {self.p.poll()})")
        if wait_ready and not self.wait_ready(60):
            raise RuntimeError(f"{name}: GET /ready did not answer 200 "
                               "within 60 s")

    def _read(self):
        for raw in self.p.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.lock:
                self.lines.append(line)
                for role, pid in ROLE_RE.findall(line):
                    self.roles[role] = int(pid)
            m = LISTENING_RE.search(line)
            if m and not self.listening.is_set():
                self.http, self.tcp = int(m.group(1)), int(m.group(2))
                if m.group(3) is not None:
                    self.vosk, self.whisperlive = int(m.group(3)), int(m.group(4))
                    self.wyoming = int(m.group(5))
                self.listening.set()
            if ARGS.server_log:
                print(f"  [{self.name}] {line}", flush=True)
        # EOF: the server is gone; let a waiter stop waiting.
        self.listening.set()

    def stderr_tail(self, n):
        with self.lock:
            return list(self.lines[-n:])

    def log(self):
        with self.lock:
            return list(self.lines)

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                return False
            st, _, _ = http_get(self.http, "/ready", headers=self.ready_headers,
                                ssl_context=self.ssl_context)
            if st == 200:
                return True
            time.sleep(0.2)
        return False

    def children(self):
        """Live children of the supervisor: {pid: cpu ticks}."""
        out = {}
        for pid, (state, ppid, cpu) in group_procs(self.pgid).items():
            if ppid == self.pid:
                out[pid] = cpu
        return out

    def gateway_pid(self):
        with self.lock:
            pid = self.roles.get("gateway")
        if pid and pid in self.children():
            return pid
        # Fall back on the listening socket of the HTTP port.
        inodes = {ino for ino, (port, _, st) in tcp_sockets().items()
                  if port == self.http and st == "0A"}
        for pid in self.children():
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        return pid
            except OSError:
                continue
        return None

    def worker_pids(self):
        gw = self.gateway_pid()
        return {pid: cpu for pid, cpu in self.children().items() if pid != gw}

    def metrics(self):
        st, _, body = http_get(self.http, "/metrics", headers=self.ready_headers,
                               ssl_context=self.ssl_context)
        return parse_metrics(body) if st == 200 else {}

    def kill_all(self):
        for pid in [self.pgid] + list(group_procs(self.pgid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def stop(self, sig=signal.SIGTERM, timeout=20.0, check_clean=True):
        """Stops the server; checks that all its processes are gone."""
        if self.stopped:
            return
        self.stopped = True
        for pid in group_procs(self.pgid):
            try:        # a SIGSTOPped process must not hold up the stop
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        try:
            self.p.send_signal(sig)
        except OSError:
            pass
        killed = False
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            killed = True
            self.kill_all()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        gone = wait_group_gone(self.pgid, 2.0)
        if not gone:
            left = group_procs(self.pgid, live_only=False)
            self.kill_all()
            wait_group_gone(self.pgid, 5.0)
        self.reader.join(5)
        if check_clean:
            check(f"{self.name}: stops on SIGTERM within {timeout:.0f} s",
                  not killed, "had to SIGKILL it" if killed else "")
            check(f"{self.name}: no process of it is left",
                  gone, "" if gone else f"left: {left}")
        # A sanitized build's reports (an abort restarts the process, so
        # nothing else would notice) fail the run whatever the test did.
        reports = [ln for ln in self.log() if SANITIZER_RE.search(ln)]
        check(f"{self.name}: no sanitizer report in its log", not reports,
              "\n".join(reports[:5]))
        if self in CURRENT:
            CURRENT.remove(self)
        shutil.rmtree(self.state_dir, ignore_errors=True)


# ---- HTTP -----------------------------------------------------------------

def http_get(port, path, timeout=5.0, headers=None, ssl_context=None):
    """(status, headers dict, body text); status None when unreachable.
    With ssl_context, over HTTPS."""
    scheme = "https" if ssl_context is not None else "http"
    req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}",
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ssl_context) as r:
            return r.status, dict(r.headers), r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return None, {}, ""


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


def metric(srv, key):
    return srv.metrics().get(key, 0.0)


# ---- audio ----------------------------------------------------------------

def load_wav(path):
    """int16 mono samples at 16 kHz (mixed down and resampled if needed)."""
    with wave.open(path, "rb") as w:
        ch, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    elif width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128) / 128
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0
    else:
        raise ValueError(f"{path}: {width}-byte samples")
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1)
    if rate != RATE:
        x = resample(x, rate, RATE)
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")


def resample(x, src, dst):
    n = int(round(len(x) * dst / src))
    t = np.arange(n) * (src / dst)
    return np.interp(t, np.arange(len(x)), x)


def audio(name, loops=1):
    """(s16le bytes, duration s, reference text)."""
    pcm, ref = AUDIO[name]
    if loops > 1:
        pcm = np.concatenate([pcm] * loops)
        ref = " ".join([ref] * loops)
    return pcm.tobytes(), len(pcm) / RATE, ref


def mix_audio():
    """The manifest's sentence-length recordings (jfk, LibriSpeech,
    LibriVox: about 67 s), in its order, joined with 1 s of silence, and
    their joined references.  Left out: the long file, and the one- to
    four-word commands (pocketsphinx-*, ljspeech-LJ002-*), on which tiny.en
    streams commit looping hallucinations ("10 of clothes 10 of clothes
    ...") whose length moves with the timing of the passes.  jfk.wav looped
    is no substitute either: with the committed text as its prompt, the
    model repeats the same sentence at places that move with the passes.
    Either way two runs would differ by far more than a recovery does."""
    gap = np.zeros(RATE, dtype="<i2")
    pcm, refs = [], []
    for name, (x, ref) in AUDIO.items():
        if name == LONG or name.startswith(("pocketsphinx-", "ljspeech-LJ002")):
            continue
        pcm += [x, gap]
        refs.append(ref)
    x = np.concatenate(pcm)
    return x.tobytes(), len(x) / RATE, " ".join(refs)


def long_audio(quick):
    """The long file; in quick mode (or without it) the short ones joined."""
    if not quick and LONG in AUDIO:
        return audio(LONG) + (LONG,)
    return mix_audio() + ("the sentence-length files joined",)


# ---- text -----------------------------------------------------------------

def wer(ref, hyp):
    return textnorm.wer(ref, hyp)


def ins_del(a, b):
    """Inserted + deleted words between two texts (normalized), from a
    difflib alignment; substitutions of equal length count 0."""
    wa, wb = textnorm.words(a), textnorm.words(b)
    n = 0
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(
            None, wa, wb, autojunk=False).get_opcodes():
        if op == "insert":
            n += j2 - j1
        elif op == "delete":
            n += i2 - i1
        elif op == "replace":
            n += abs((i2 - i1) - (j2 - j1))
    return n


# ---- TCP client -----------------------------------------------------------

def tcp_stream(port, pcm, piece=3200, speed=None, timeout=180.0):
    """Streams pcm (s16le) over raw TCP, half-closes, reads to EOF.
    Returns (lines, eof) where eof tells whether the server closed."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.settimeout(timeout)
    buf = bytearray()
    state = {"eof": False, "err": None}

    def rx():
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    state["eof"] = True
                    return
                buf.extend(d)
        except OSError as e:
            state["err"] = repr(e)

    t = threading.Thread(target=rx, daemon=True)
    t.start()
    t0 = time.monotonic()
    try:
        for off in range(0, len(pcm), piece):
            if speed:
                delay = t0 + off / 2 / RATE / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            s.sendall(pcm[off:off + piece])
        s.shutdown(socket.SHUT_WR)
    except OSError as e:
        state["err"] = "send: " + repr(e)
    t.join(timeout)
    s.close()
    text = bytes(buf).decode("utf-8", "replace")
    return [ln for ln in text.split("\n") if ln != ""], state


def check_tcp_lines(prefix, lines, state, ref):
    check(f"{prefix}: the server closes the connection after the last line",
          state["eof"], f"state {state}")
    bad = [ln for ln in lines if not LINE_RE.match(ln)]
    check(f"{prefix}: every line is '<beg_ms> <end_ms> <text>'",
          lines and not bad, f"{len(lines)} lines, bad: {bad[:3]}")
    prev_end = -1
    order_ok = True
    for ln in lines:
        m = LINE_RE.match(ln)
        if not m:
            continue
        beg, end = int(m.group(1)), int(m.group(2))
        if beg > end or beg < prev_end:
            order_ok = False
        prev_end = max(prev_end, end)
    check(f"{prefix}: line times never go back", order_ok, str(lines))
    hyp = " ".join(LINE_RE.match(ln).group(3) for ln in lines
                   if LINE_RE.match(ln))
    w = wer(ref, hyp)
    check(f"{prefix}: WER {w:.3f} <= 0.10", w <= 0.10, f"text: {hyp!r}")
    last = textnorm.words(ref)[-1]
    check(f"{prefix}: the last reference word {last!r} ends the text",
          last in textnorm.words(hyp)[-3:], f"text: {hyp!r}")
    return hyp


# ---- WebSocket clients ----------------------------------------------------

class WSRun:
    """A WebSocket client with a receiving thread that collects events."""

    def __init__(self, port, path="/v1/stream"):
        self.ws = ws_connect(f"ws://127.0.0.1:{port}{path}", open_timeout=10,
                             close_timeout=10, max_size=None,
                             compression=None, proxy=None,
                             ping_interval=None)
        self.events = []
        self.close_code = None
        self.close_reason = None
        self.error = None
        self.closed = threading.Event()
        self.t = threading.Thread(target=self._rx, daemon=True)
        self.t.start()

    def _rx(self):
        try:
            while True:
                m = self.ws.recv()
                if isinstance(m, bytes):
                    ev = {"type": "<binary>"}
                else:
                    try:
                        ev = json.loads(m)
                    except ValueError:
                        ev = {"type": "<not json>", "raw": m}
                    if not isinstance(ev, dict):
                        ev = {"type": "<not an object>", "raw": m}
                ev["_t"] = time.monotonic()
                self.events.append(ev)
        except ConnectionClosed as e:
            self.close_code = e.rcvd.code if e.rcvd is not None else 1006
            self.close_reason = e.rcvd.reason if e.rcvd is not None else ""
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)
        finally:
            self.closed.set()

    def send(self, data):
        """Sends; False once the connection is closed."""
        try:
            self.ws.send(data)
            return True
        except ConnectionClosed:
            return False
        except OSError:
            return False

    def wait(self, timeout):
        if not self.closed.wait(timeout):
            self.abort()
            return False
        return True

    def abort(self):
        try:
            self.ws.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.closed.wait(5)

    def of(self, kind):
        return [e for e in self.events if e.get("type") == kind]

    def final_text(self):
        return "".join(e.get("text", "") for e in self.of("final"))


def ws_stream(port, data, cfg, bytes_per_s, frame_s=0.1, speed=None,
              hook=None, timeout=180.0, sample_bytes=2):
    """Streams data over the native protocol: config, binary frames of
    frame_s seconds (paced at speed x real time when speed is set), finish;
    waits for the server to close.  hook(fraction_sent, run) is called
    before each frame.  Returns the WSRun (run.timed_out tells)."""
    run = WSRun(port)
    run.timed_out = False
    if cfg is not None:
        run.send(json.dumps(cfg))
    fb = int(round(frame_s * bytes_per_s)) // sample_bytes * sample_bytes
    t0 = time.monotonic()
    for off in range(0, len(data), fb):
        if speed:
            delay = t0 + off / bytes_per_s / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if hook:
            hook(off / len(data), run)
        if not run.send(data[off:off + fb]):
            break
    run.send(json.dumps({"type": "finish"}))
    run.timed_out = not run.wait(timeout)
    return run


def check_ws_run(prefix, run, ref, max_wer=0.10, expect_code=1000,
                 allow_errors=False):
    ev = run.events
    check(f"{prefix}: the server closes the stream in time",
          not run.timed_out, f"{len(ev)} events so far")
    check(f"{prefix}: the first event is 'ready'",
          ev and ev[0].get("type") == "ready",
          f"first: {ev[0] if ev else None}")
    seqs = [e.get("seq") for e in ev]
    no_seq = [e for e in ev if not isinstance(e.get("seq"), int)]
    mono = all(a < b for a, b in zip(seqs, seqs[1:])) if not no_seq else False
    check(f"{prefix}: every event has a seq, strictly increasing",
          mono, f"events without seq: {no_seq[:2]}; seqs {seqs[:20]}")
    known = {"ready", "partial", "final", "utterance_end", "warning", "error"}
    odd = [e for e in ev if e.get("type") not in known]
    check(f"{prefix}: every event is of a known type", not odd, str(odd[:3]))
    if not allow_errors:
        errs = run.of("error")
        check(f"{prefix}: no error event", not errs, str(errs[:3]))
    finals = run.of("final")
    bad_words = []
    for f in finals:
        ws = f.get("words")
        if not ws:
            bad_words.append(("no words", f.get("text")))
            continue
        for w in ws:
            if not (isinstance(w.get("start"), (int, float)) and
                    isinstance(w.get("end"), (int, float)) and
                    w["start"] <= w["end"] and
                    isinstance(w.get("probability"), (int, float)) and
                    isinstance(w.get("text"), str)):
                bad_words.append(w)
    check(f"{prefix}: every final has words with text, start <= end, "
          "probability", finals and not bad_words,
          f"{len(finals)} finals; bad: {bad_words[:3]}")
    hyp = run.final_text()
    w = wer(ref, hyp)
    check(f"{prefix}: WER {w:.3f} <= {max_wer:.2f}", w <= max_wer,
          f"text: {hyp!r}")
    check(f"{prefix}: close code {expect_code}",
          run.close_code == expect_code,
          f"got {run.close_code} {run.close_reason!r} {run.error or ''}")
    return hyp


class RawWS:
    """A hand-made WebSocket client on a plain socket, for frames that no
    well-behaved library sends."""
    KEY = "dGhlIHNhbXBsZSBub25jZQ=="
    ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    def __init__(self, port, timeout=10.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.sendall((
            "GET /v1/stream HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self.KEY}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        resp = b""
        while b"\r\n\r\n" not in resp:
            d = self.s.recv(4096)
            if not d:
                raise RuntimeError(f"upgrade: connection closed: {resp!r}")
            resp += d
        head, self.buf = resp.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in lines[0] + " ":
            raise RuntimeError(f"upgrade refused: {lines[0]}")
        hdrs = {k.strip().lower(): v.strip() for k, v in
                (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        if hdrs.get("sec-websocket-accept") != self.ACCEPT:
            raise RuntimeError(f"bad Sec-WebSocket-Accept: {hdrs}")

    def send_frame(self, opcode, payload, fin=True):
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", b0, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) \
            if n < 4096 else (np.frombuffer(payload, np.uint8) ^ np.resize(
                np.frombuffer(mask, np.uint8), n)).tobytes()
        self.s.sendall(hdr + mask + body)

    def _need(self, n, deadline):
        while len(self.buf) < n:
            self.s.settimeout(max(0.05, deadline - time.monotonic()))
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d

    def read_until_close(self, timeout=10.0):
        """(events, close code or None when the socket ended without a
        close frame, 'timeout' when nothing ended it)."""
        events = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self._need(2, deadline)
                b0, b1 = self.buf[0], self.buf[1]
                n, off = b1 & 0x7F, 2
                if n == 126:
                    self._need(4, deadline)
                    n, off = struct.unpack("!H", self.buf[2:4])[0], 4
                elif n == 127:
                    self._need(10, deadline)
                    n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
                self._need(off + n, deadline)
                payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
                op = b0 & 0x0F
                if op == 8:
                    return events, (struct.unpack("!H", payload[:2])[0]
                                    if len(payload) >= 2 else 1005)
                if op == 1:
                    try:
                        events.append(json.loads(payload))
                    except ValueError:
                        events.append({"type": "<not json>"})
        except (EOFError, ConnectionResetError):
            return events, None
        except socket.timeout:
            pass
        return events, "timeout"

    def stream_until_close(self, cfg, pcm, bytes_per_s, timeout=30.0):
        """Sends cfg, then pcm in 0.1 s frames (from the start again when
        it runs out) without waiting for anything, as a client streaming a
        live source does, until the server's close frame arrives.  Returns
        the close code (None: the socket ended without one; 'timeout')."""
        self.send_frame(1, json.dumps(cfg).encode())
        fb = int(bytes_per_s // 10) // 2 * 2
        deadline = time.monotonic() + timeout
        off = 0
        while time.monotonic() < deadline:
            try:
                self.send_frame(2, pcm[off:off + fb])
            except OSError:
                return self.read_until_close(timeout=2)[1]
            off = off + fb if off + 2 * fb <= len(pcm) else 0
            _, code = self.read_until_close(timeout=0.02)
            if code != "timeout":
                return code
        return "timeout"

    def answer_close(self, frames=3, timeout=10.0):
        """The client's side of the closing handshake, after the server's
        close frame: it still sends `frames` audio frames (as a client whose
        audio was already on its way does), then its own close, then waits
        for the server to end the connection.  Returns (whether the
        connection stayed open until the answer, how the server ended it:
        'eof', 'reset' or 'timeout')."""
        stayed_open = True
        try:
            for _ in range(frames):
                self.send_frame(2, b"\0" * 3200)
                self.s.settimeout(0.05)
                try:
                    if self.s.recv(65536) == b"":
                        stayed_open = False
                        break
                except socket.timeout:
                    pass
            self.send_frame(8, struct.pack("!H", 1000))
        except OSError:
            return False, "reset"
        return stayed_open, self.wait_end(timeout)

    def wait_end(self, timeout):
        """Reads and drops until the server ends the connection: 'eof'
        (a FIN), 'reset', or 'timeout'."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.s.settimeout(max(0.05, deadline - time.monotonic()))
                if self.s.recv(65536) == b"":
                    return "eof"
        except socket.timeout:
            pass
        except OSError:
            return "reset"
        return "timeout"

    def vanish(self):
        """Closes with a reset: no close frame, no FIN."""
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          struct.pack("ii", 1, 0))
        self.s.close()

    def close(self):
        self.s.close()


def check_close_handshake(prefix, port, cfg, pcm, bytes_per_s, code):
    """A client that streams without pause until the server closes it gets
    the close frame with `code`, and the closing handshake: the server
    keeps reading (and dropping) its audio until the client's close, then
    ends the connection with a FIN, not a reset.  Closing at once would
    reset a client still sending, which can lose the frame and its code."""
    ws = RawWS(port)
    try:
        got = ws.stream_until_close(cfg, pcm, bytes_per_s)
        check(f"{prefix}: a client streaming without pause gets close {code}",
              got == code, f"{got}")
        if got != code:
            return
        stayed_open, end = ws.answer_close()
        check(f"{prefix}: the server keeps the connection open until the "
              "client answers its close", stayed_open)
        check(f"{prefix}: then it ends the connection cleanly (no reset)",
              end == "eof", end)
    finally:
        ws.close()


# ---- tests ----------------------------------------------------------------

def test_a_tcp_jfk():
    """TCP jfk.wav in 100 ms pieces, as fast as possible."""
    srv = Server(name="a")
    try:
        pcm, dur, ref = audio(JFK)
        lines, state = tcp_stream(srv.tcp, pcm)
        check_tcp_lines("a tcp jfk", lines, state, ref)
    finally:
        srv.stop()


def test_b_ws_jfk():
    srv = Server(name="b")
    try:
        pcm, dur, ref = audio(JFK)
        run = ws_stream(srv.http, pcm,
                        {"format": "pcm_s16le", "sample_rate": 16000},
                        bytes_per_s=2 * RATE)
        check_ws_run("b ws jfk s16 16k", run, ref)
    finally:
        srv.stop()


def test_c_ws_f32_48k():
    srv = Server(name="c")
    try:
        pcm, dur, ref = audio(JFK)
        x = np.frombuffer(pcm, "<i2").astype(np.float64) / 32768.0
        y = resample(x, RATE, 48000).astype("<f4").tobytes()
        run = ws_stream(srv.http, y, {"type": "config", "format": "pcm_f32le",
                                      "sample_rate": 48000},
                        bytes_per_s=4 * 48000, sample_bytes=4)
        check_ws_run("c ws jfk f32 48k", run, ref)
    finally:
        srv.stop()


def group_usage(srv):
    procs = group_procs(srv.pgid)
    return (len(procs), sum(proc_fds(p) for p in procs),
            sum(proc_rss_kb(p) for p in procs) / 1024.0)


def wait_streams_idle(srv, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = srv.metrics()
        if m.get("sotto_streams_active", -1) == 0:
            return True
        time.sleep(0.25)
    return False


def test_d_abrupt_tcp():
    n_total = 20 if ARGS.quick else 200
    srv = Server(["--max-streams", "20"], name="d")
    try:
        pcm, dur, ref = audio(JFK)
        # Warm both workers up, so the baseline holds their buffers.
        outs = [None, None]

        def warm(i):
            outs[i] = tcp_stream(srv.tcp, pcm)
        ts = [threading.Thread(target=warm, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(200)
        wait_streams_idle(srv, 30)
        time.sleep(2)
        n0, fd0, rss0 = group_usage(srv)
        rng = random.Random(1961)
        errors = []

        def client(i):
            n = rng.randint(RATE // 2, 2 * RATE) * 2
            start = rng.randrange(0, len(pcm) - n) // 2 * 2
            mode = i % 3
            try:
                s = socket.create_connection(("127.0.0.1", srv.tcp), timeout=10)
                try:
                    s.sendall(pcm[start:start + n])
                except OSError:
                    pass    # refused at capacity: the server closed it
                if mode == 0:       # reset
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
                elif mode == 2:     # half-close, then close unread
                    try:
                        s.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                s.close()
            except OSError as e:
                errors.append(repr(e))

        for base in range(0, n_total, 20):
            ts = [threading.Thread(target=client, args=(i,))
                  for i in range(base, min(n_total, base + 20))]
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
        check(f"d abrupt: {n_total} clients could connect", not errors,
              f"{len(errors)} failed: {errors[:3]}")
        idle = wait_streams_idle(srv, 120 if ARGS.quick else 400)
        check("d abrupt: every stream is gone afterwards "
              "(sotto_streams_active 0)", idle,
              f"metrics: {srv.metrics().get('sotto_streams_active')}")
        st, _, body = http_get(srv.http, "/ready")
        check("d abrupt: GET /ready is 200 after the storm", st == 200,
              f"{st} {body}")
        lines, state = tcp_stream(srv.tcp, pcm)
        check_tcp_lines("d abrupt: fresh tcp jfk", lines, state, ref)
        wait_streams_idle(srv, 30)
        time.sleep(2)
        n1, fd1, rss1 = group_usage(srv)
        check(f"d abrupt: process count unchanged ({n0} -> {n1})", n0 == n1)
        check(f"d abrupt: open fds within +5 ({fd0} -> {fd1})",
              fd1 <= fd0 + 5)
        check(f"d abrupt: RSS within +50 MB ({rss0:.0f} -> {rss1:.0f} MB)",
              rss1 <= rss0 + 50)
    finally:
        srv.stop()


def test_e_ws_garbage():
    srv = Server(["--max-frame", "65536"], name="e")
    try:
        pcm, dur, ref = audio(JFK)
        # (1) a binary message over --max-frame
        run = WSRun(srv.http)
        run.send(json.dumps({"format": "pcm_s16le"}))
        run.send(pcm[:100000])
        run.wait(15)
        check("e (1) a 100000-byte binary message over --max-frame 65536 "
              "gets close 1009", run.close_code == 1009,
              f"got {run.close_code} {run.close_reason!r}")
        # (2) invalid UTF-8 in a text frame
        r = RawWS(srv.http)
        r.send_frame(0x1, b"\xff\xfe")
        evs, code = r.read_until_close()
        r.close()
        check("e (2) a text frame with invalid UTF-8 gets close 1007",
              code == 1007, f"got {code}, events {evs}")
        # (3) a fragmented control frame
        r = RawWS(srv.http)
        r.send_frame(0x9, b"hi", fin=False)
        evs, code = r.read_until_close()
        r.close()
        check("e (3) a ping with FIN=0 gets close 1002", code == 1002,
              f"got {code}, events {evs}")
        # (4) bad JSON: an error event, the stream goes on
        run = WSRun(srv.http)
        run.send("{this is not json")
        time.sleep(1.0)
        open_after = not run.closed.is_set()
        run.send(json.dumps({"type": "finish"}))
        run.wait(15)
        errs = run.of("error")
        check("e (4) bad JSON gets an error event",
              errs and errs[0].get("code") == "bad_json",
              f"events {run.events}")
        check("e (4) ... and the connection stays open", open_after)
        check("e (4) ... and a finish then closes it with 1000",
              run.close_code == 1000, f"got {run.close_code}")
        # (5) an unknown message type
        run = WSRun(srv.http)
        run.send(json.dumps({"type": "bogus"}))
        time.sleep(1.0)
        open_after = not run.closed.is_set()
        run.send(json.dumps({"type": "finish"}))
        run.wait(15)
        errs = run.of("error")
        check("e (5) an unknown message type gets an error event",
              errs and errs[0].get("code") == "unknown_type",
              f"events {run.events}")
        check("e (5) ... the connection stays open and closes with 1000",
              open_after and run.close_code == 1000,
              f"open {open_after}, code {run.close_code}")
        # (6) a peer that vanishes without a close frame
        r = RawWS(srv.http)
        r.send_frame(0x1, json.dumps({"format": "pcm_s16le"}).encode())
        for k in range(5):
            r.send_frame(0x2, pcm[k * 3200:(k + 1) * 3200])
        time.sleep(0.5)
        r.vanish()
        idle = wait_streams_idle(srv, 30)
        check("e (6) the stream of a vanished peer is freed "
              "(sotto_streams_active 0)", idle,
              f"{srv.metrics().get('sotto_streams_active')}")
        # (7) a config refused for one field changes nothing: the s16 audio
        # that follows is still read as s16 at 16 kHz.
        run = ws_stream(srv.http, pcm, {"format": "pcm_f32le",
                                        "sample_rate": 5},
                        bytes_per_s=2 * RATE)
        errs = run.of("error")
        check("e (7) a config with a bad field gets an error event",
              errs and errs[0].get("code") == "bad_config", f"{errs[:2]}")
        w = wer(ref, run.final_text())
        check("e (7) ... and changes nothing (the audio is still read as "
              f"pcm_s16le 16 kHz: WER {w:.3f} <= 0.10)",
              w <= 0.10 and run.close_code == 1000,
              f"text {run.final_text()!r}, close {run.close_code}, "
              f"{len(errs)} error events")
        # Afterwards the server still works.
        st, _, body = http_get(srv.http, "/ready")
        check("e after garbage: GET /ready is 200", st == 200, f"{st} {body}")
        run = ws_stream(srv.http, pcm, {"format": "pcm_s16le"},
                        bytes_per_s=2 * RATE)
        check_ws_run("e after garbage: ws jfk", run, ref)
    finally:
        srv.stop()


def test_f_overload():
    srv = Server(["--max-streams", "2"], name="f")
    keep = []
    try:
        for _ in range(2):
            run = WSRun(srv.http)
            run.send(json.dumps({"format": "pcm_s16le"}))
            keep.append(run)
        time.sleep(0.5)
        check("f overload: two streams open",
              all(not r.closed.is_set() for r in keep))
        try:
            third = WSRun(srv.http)
            third.wait(10)
            code = third.close_code
        except Exception as e:  # noqa: BLE001
            code = repr(e)
        check("f overload: a third WebSocket stream gets close 1013",
              code == 1013, f"got {code}")
        s = socket.create_connection(("127.0.0.1", srv.tcp), timeout=5)
        t0 = time.monotonic()
        try:
            d = s.recv(100)
        except ConnectionResetError:
            d = b""
        except socket.timeout:
            d = None
        s.close()
        check("f overload: a third TCP connection is closed at once",
              d == b"", f"recv gave {d!r} after {time.monotonic() - t0:.1f} s")
        m = srv.metrics()
        rej = m.get('sotto_streams_rejected_total{reason="capacity"}', 0)
        check(f"f overload: sotto_streams_rejected_total{{reason=\"capacity\"}}"
              f" = {rej:.0f} >= 2", rej >= 2)
        for r in keep:
            r.send(json.dumps({"type": "finish"}))
        for r in keep:
            r.wait(15)
        check("f overload: the two streams end with 1000 on finish",
              all(r.close_code == 1000 for r in keep),
              str([r.close_code for r in keep]))
        st, _, _ = http_get(srv.http, "/ready")
        check("f overload: /ready is 200", st == 200, str(st))
    finally:
        for r in keep:
            r.abort()
        srv.stop()


class Striker:
    """A ws_stream hook: at a fraction of the audio sent, signals the worker
    that has used the most CPU since the stream started."""

    def __init__(self, srv, sig, at=0.4):
        self.srv, self.sig, self.at = srv, sig, at
        self.cpu0 = srv.worker_pids()
        self.victim = None
        self.error = None

    def __call__(self, frac, run):
        if self.victim is not None or self.error is not None or frac < self.at:
            return
        now = self.srv.worker_pids()
        delta = {pid: cpu - self.cpu0.get(pid, 0) for pid, cpu in now.items()
                 if pid in self.cpu0}
        if not delta:
            self.error = f"no worker found (children {self.srv.children()})"
            return
        self.victim = max(delta, key=delta.get)
        self.delta = delta
        self.t = time.monotonic()
        os.kill(self.victim, self.sig)


def stream_long(srv, data, dur, hook=None):
    return ws_stream(srv.http, data, {"format": "pcm_s16le",
                                      "sample_rate": 16000},
                     bytes_per_s=2 * RATE, speed=8.0, hook=hook,
                     timeout=dur * 3 + 120)


def test_g_worker_sigkill():
    data, dur, ref, label = long_audio(ARGS.quick)
    srv = Server(["--workers", "2"], name="g")
    try:
        base = stream_long(srv, data, dur)
        bt = base.final_text()
        bw = wer(ref, bt)
        check(f"g baseline ({label}, {dur:.0f} s at 8x): completes with 1000",
              base.close_code == 1000 and not base.timed_out,
              f"code {base.close_code}, timed out {base.timed_out}")
        note(f"g baseline WER {bw:.3f}")
        srv.wait_ready(30)
        strike = Striker(srv, signal.SIGKILL)
        run = stream_long(srv, data, dur, hook=strike)
        check("g SIGKILL: a worker was found and killed at 40 % sent",
              strike.victim is not None, strike.error or "")
        kt = run.final_text()
        kw = wer(ref, kt)
        warn = [e for e in run.of("warning") if e.get("code") == "worker_restart"]
        check("g SIGKILL: a 'warning' event with code worker_restart",
              warn, f"warnings: {run.of('warning')}")
        check("g SIGKILL: the stream completes with close 1000",
              run.close_code == 1000 and not run.timed_out,
              f"code {run.close_code} {run.close_reason!r}, "
              f"timed out {run.timed_out}")
        seqs = [e.get("seq") for e in run.events]
        check("g SIGKILL: every event (the warning too) has a seq, strictly "
              "increasing", all(isinstance(s, int) for s in seqs) and
              all(a < b for a, b in zip(seqs, seqs[1:])),
              f"events without seq: "
              f"{[e for e in run.events if 'seq' not in e][:2]}")
        accuracy_check(f"g SIGKILL: WER {kw:.3f} within 2 points of the baseline "
              f"{bw:.3f}", kw <= bw + 0.02, f"text: {kt[-400:]!r}")
        nref = len(textnorm.words(ref))
        nid = ins_del(bt, kt)
        accuracy_check(f"g SIGKILL: words inserted + deleted against the baseline "
              f"{nid} <= 2 % of {nref}", nid <= 0.02 * nref,
              f"baseline: {bt!r}\nkilled:   {kt!r}")
        m = srv.metrics()
        d = m.get('sotto_worker_deaths_total{signal="SIGKILL"}', 0)
        r = m.get("sotto_stream_recoveries_total", 0)
        check(f"g SIGKILL: sotto_worker_deaths_total{{signal=\"SIGKILL\"}} "
              f"= {d:.0f} >= 1", d >= 1)
        check(f"g SIGKILL: sotto_stream_recoveries_total = {r:.0f} >= 1",
              r >= 1)
        log = srv.log()
        pid = str(strike.victim)
        hit = [ln for ln in log if "SIGKILL" in ln and
               re.search(rf"\bpid {pid}\b", ln)]
        check("g SIGKILL: the log records the worker's death by SIGKILL",
              hit, f"no stderr line mentions pid {pid} and SIGKILL")
        # SIGKILL leaves the worker no chance to write a record: the
        # gateway writes it, with the streams the worker held.
        recs = [f for f in os.listdir(srv.state_dir)
                if re.match(rf"crash-worker\d+-{pid}-", f)]
        body = ""
        if recs:
            with open(os.path.join(srv.state_dir, recs[0])) as f:
                body = f.read()
        check("g SIGKILL: a crash file names the signal and the streams in flight",
              "signal=9 (SIGKILL)" in body and
              re.search(r"streams in flight: \d+", body) is not None,
              f"files {os.listdir(srv.state_dir)}; {body!r}")
        deadline = time.monotonic() + 30
        while (time.monotonic() < deadline and
               metric(srv, "sotto_workers_ready") < 2):
            time.sleep(0.25)
        check("g SIGKILL: the worker is replaced (sotto_workers_ready 2)",
              metric(srv, "sotto_workers_ready") == 2,
              f"{metric(srv, 'sotto_workers_ready')}")

        # One long utterance (10 s, 28 words, no pause), every worker killed
        # once six finals have come (or at 80 % sent): the replay covers
        # more committed words than a short utterance has, and the resumed
        # stream must know every one of them as committed.  (With only its
        # last eight, the earlier ones went into its prompt, tiny.en looped
        # on audio whose text it was primed with, and the end of the
        # utterance was lost: "... fat mutton" and no more.)
        pcm, udur, uref = audio(UTTERANCE)
        ubase = ws_stream(srv.http, pcm, {"format": "pcm_s16le"}, 2 * RATE, speed=1.0)
        killed = []

        def kill_all(frac, r):
            if not killed and (len(r.of("final")) >= 6 or frac >= 0.8):
                killed.extend(srv.worker_pids())
                for pid in killed:
                    os.kill(pid, signal.SIGKILL)
        urun = ws_stream(srv.http, pcm, {"format": "pcm_s16le"}, 2 * RATE, speed=1.0,
                         hook=kill_all)
        check("g SIGKILL in a long utterance: both workers killed, the stream "
              "completes with close 1000", len(killed) == 2 and urun.close_code == 1000,
              f"killed {killed}, code {urun.close_code} {urun.close_reason!r}")
        nid = ins_del(ubase.final_text(), urun.final_text())
        accuracy_check(f"g SIGKILL in a long utterance: {nid} words inserted or "
                       "deleted against the undisturbed run (<= 2)", nid <= 2,
                       f"undisturbed: {ubase.final_text()!r}\n"
                       f"killed:      {urun.final_text()!r}")
    finally:
        srv.stop()


def test_h_worker_sigstop():
    data, dur, ref, label = long_audio(True)
    srv = Server(["--heartbeat-timeout", "2"], name="h")
    strike = None
    try:
        base = stream_long(srv, data, dur)
        bw = wer(ref, base.final_text())
        check(f"h baseline ({label}, {dur:.0f} s at 8x): completes with 1000",
              base.close_code == 1000, f"code {base.close_code}")
        strike = Striker(srv, signal.SIGSTOP)
        run = stream_long(srv, data, dur, hook=strike)
        check("h SIGSTOP: a worker was found and stopped at 40 % sent",
              strike.victim is not None, strike.error or "")
        kw = wer(ref, run.final_text())
        check("h SIGSTOP: the stream completes with close 1000",
              run.close_code == 1000 and not run.timed_out,
              f"code {run.close_code}, timed out {run.timed_out}")
        accuracy_check(f"h SIGSTOP: WER {kw:.3f} within 2 points of the baseline "
              f"{bw:.3f}", kw <= bw + 0.02, f"text: {run.final_text()!r}")
        check("h SIGSTOP: a 'warning' event with code worker_restart",
              any(e.get("code") == "worker_restart"
                  for e in run.of("warning")), f"{run.of('warning')}")
        k = metric(srv, "sotto_watchdog_kills_total")
        check(f"h SIGSTOP: sotto_watchdog_kills_total = {k:.0f} >= 1", k >= 1)
        st = proc_stat(strike.victim) if strike.victim else None
        check("h SIGSTOP: the stopped worker is gone",
              st is None or st[0] in "ZX", f"state {st}")
    finally:
        if strike is not None and strike.victim:
            try:
                os.kill(strike.victim, signal.SIGCONT)
            except OSError:
                pass
        srv.stop()


def test_h2_hang_in_inference():
    """Variant: a worker that hangs inside an inference (its heartbeat
    thread goes on beating, reporting the stream in inference), by the
    fault injection of test builds (SOTTO_FAULT=hang-after:3@0: worker0
    hangs in its 3rd feed that runs a pass; worker1 never does).  The
    stream is placed on worker0 (both are idle; the lower slot wins), which
    hangs about 3 s into jfk.wav at real time; the stream resumes on worker1
    from its last commit.  Skipped when the binary was built without fault
    injection."""
    srv = Server(["--inference-timeout", "3"],
                 env={"SOTTO_FAULT": "hang-after:3@0"}, name="h2")
    try:
        if not any("fault injection" in ln for ln in srv.log()):
            note("h2 skipped: this build has no fault injection "
                 "(-DSOTTO_FAULT_INJECTION)")
            return
        # Both workers ready, so that the stream goes to worker0.
        deadline, n_ready = time.monotonic() + 20, 0
        while time.monotonic() < deadline and n_ready < 2:
            st, _, body = http_get(srv.http, "/ready")
            try:
                n_ready = json.loads(body).get("workers_ready", 0)
            except ValueError:
                n_ready = 0
            time.sleep(0.1)
        check("h2 hang: both workers are ready", n_ready >= 2, f"{n_ready}")
        pcm, dur, ref = audio(JFK)
        run = ws_stream(srv.http, pcm, {"format": "pcm_s16le"},
                        bytes_per_s=2 * RATE, speed=1.0, timeout=60)
        check_ws_run("h2 hang in inference", run, ref)
        check("h2 hang: a 'warning' event with code worker_restart",
              any(e.get("code") == "worker_restart"
                  for e in run.of("warning")), f"{run.of('warning')}")
        k = metric(srv, "sotto_watchdog_kills_total")
        check(f"h2 hang: sotto_watchdog_kills_total = {k:.0f} >= 1", k >= 1)
        check("h2 hang: the log says the worker was stuck in one inference",
              any("stuck in one inference" in ln for ln in srv.log()),
              "no such line")
    finally:
        srv.stop()


def bad_model_dir():
    d = tempfile.mkdtemp(prefix="sotto-bad-model-")
    for f in ("config.json", "tokenizer.json", "vocabulary.txt"):
        src = os.path.join(ARGS.model, f)
        if os.path.exists(src):
            with open(src, "rb") as a, open(os.path.join(d, f), "wb") as b:
                b.write(a.read())
    with open(os.path.join(d, "model.bin"), "wb") as f:
        f.write(bytes(range(100)))
    return d


def wait_not_ready(srv, reasons, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        st, hdrs, body = http_get(srv.http, "/ready")
        last = (st, hdrs, body)
        try:
            reason = json.loads(body).get("reason")
        except (ValueError, AttributeError):
            reason = None
        if st == 503 and reason in reasons:
            return True, last
        time.sleep(0.25)
    return False, last


def test_i_crash_loop():
    bad = bad_model_dir()
    try:
        test_i1_fatal_model(bad)
    finally:
        shutil.rmtree(bad, ignore_errors=True)
    test_i2_real_crash_loop()
    test_i3_killed_workers()


def test_i3_killed_workers():
    """The crash-loop breaker in any build: the worker is SIGKILLed each
    time it comes back, until more than --crash-loop-deaths deaths fall
    within the window."""
    srv = Server(["--crash-loop-deaths", "3", "--crash-loop-window", "60"],
                 workers=1, name="i3")
    try:
        kills = 0
        tripped = False
        for _ in range(6):
            pids = list(srv.worker_pids())
            if not pids:
                break
            os.kill(pids[0], signal.SIGKILL)
            kills += 1
            # Either the supervisor brings a new worker (after its backoff),
            # or the breaker has tripped and none comes.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                now = list(srv.worker_pids())
                if now and now[0] != pids[0]:
                    break
                ok, _ = wait_not_ready(srv, ("crash_loop",), 0.3)
                if ok:
                    tripped = True
                    break
            if tripped:
                break
        ok, (st, _, body) = wait_not_ready(srv, ("crash_loop",), 10)
        check(f"i3 killed workers: /ready is 503 crash_loop after {kills} deaths "
              "(limit 3 in 60 s)", ok and kills == 4, f"last: {st} {body.strip()}")
        check("i3 killed workers: the log says why",
              any("crash loop" in ln for ln in srv.log()))
        time.sleep(2)
        check("i3 killed workers: no worker is respawned", not srv.worker_pids(),
              f"{srv.worker_pids()}")
        st, _, _ = http_get(srv.http, "/health")
        check("i3 killed workers: /health stays 200", st == 200, str(st))
    finally:
        srv.stop()


def test_i1_fatal_model(bad):
    srv = Server(["--crash-loop-deaths", "3"], model=bad,
                 wait_ready=False, name="i")
    try:
        ok, (st, hdrs, body) = wait_not_ready(srv, ("fatal", "crash_loop"), 20)
        check("i fatal model: /ready is 503 with reason fatal or crash_loop "
              "within 20 s", ok, f"last: {st} {body.strip()}")
        ra = {k.lower(): v for k, v in hdrs.items()}.get("retry-after")
        check("i fatal model: the 503 carries Retry-After", ra is not None,
              str(hdrs))
        st, _, body = http_get(srv.http, "/health")
        check("i fatal model: /health stays 200", st == 200, f"{st} {body}")
        w0 = set(srv.worker_pids())
        time.sleep(3)
        w1 = set(srv.worker_pids())
        check("i fatal model: no worker is respawned",
              not (w1 - w0), f"workers before {w0}, after {w1}")
        m = srv.metrics()
        check("i fatal model: sotto_worker_restarts_total is 0",
              m.get("sotto_worker_restarts_total", -1) == 0,
              f"{m.get('sotto_worker_restarts_total')}")
        st, _, body = http_get(srv.http, "/health")
        check("i fatal model: /health is still 200", st == 200, str(st))
        # A client arriving now is refused rather than left waiting.
        try:
            run = WSRun(srv.http)
            run.wait(10)
            code = run.close_code
        except Exception as e:  # noqa: BLE001
            code = repr(e)
        check("i fatal model: a new WebSocket stream is refused with 1013",
              code == 1013, f"got {code}")
    finally:
        srv.stop()


def test_i2_real_crash_loop():
    """Variant: workers that really crash (SIGSEGV) on every stream, by the
    fault injection of test builds (SOTTO_FAULT=crash-after:1).  Skipped
    when the binary was built without it."""
    srv = Server(["--crash-loop-deaths", "3", "--crash-loop-window", "60",
                  "--restart-backoff-max", "0.5"],
                 env={"SOTTO_FAULT": "crash-after:1"}, name="i2")
    try:
        if not any("fault injection" in ln for ln in srv.log()):
            note("i2 skipped: this build has no fault injection "
                 "(-DSOTTO_FAULT_INJECTION)")
            return
        pcm, dur, ref = audio(JFK)
        runs = []
        deadline = time.monotonic() + 40
        ok = False
        while time.monotonic() < deadline and not ok:
            try:
                r = WSRun(srv.http)
            except Exception:  # noqa: BLE001
                break
            runs.append(r)
            r.send(json.dumps({"format": "pcm_s16le"}))
            for off in range(0, len(pcm), 3200):
                if not r.send(pcm[off:off + 3200]):
                    break
            r.send(json.dumps({"type": "finish"}))
            ok, last = wait_not_ready(srv, ("crash_loop",), 5)
        check("i2 crash loop: /ready is 503 with reason crash_loop", ok,
              f"last: {last if runs else 'no stream could start'}")
        crashes = [f for f in os.listdir(srv.state_dir)
                   if f.startswith("crash-")]
        check("i2 crash loop: crash files in the state directory",
              crashes, f"{os.listdir(srv.state_dir)}")
        check("i2 crash loop: the log records SIGSEGV",
              any("SIGSEGV" in ln for ln in srv.log()))
        st, _, _ = http_get(srv.http, "/health")
        check("i2 crash loop: /health stays 200", st == 200, str(st))
        ended = [r.wait(30) for r in runs]
        check("i2 crash loop: every client's stream is closed by the server "
              "within 30 s (not left waiting for a worker)", all(ended),
              f"ended {ended}, codes {[r.close_code for r in runs]}, "
              f"events {[[e.get('type') for e in r.events] for r in runs]}")
    finally:
        srv.stop()


def test_j_drain():
    srv = Server(["--drain-timeout", "10"], name="j")
    http, tcp = srv.http, srv.tcp
    sigterm_at = [None]
    during = {}
    try:
        pcm, dur, ref = audio(JFK)

        def tcp_client():
            during["tcp"] = tcp_stream(tcp, pcm, speed=1.0, timeout=30)

        def probe():
            # As soon as the gateway has heard of the drain: /ready says
            # so, and a new stream is turned away with 1001.
            deadline = time.monotonic() + 5
            st, body = None, ""
            while time.monotonic() < deadline:
                st, _, body = http_get(http, "/ready")
                if st == 503:
                    break
                time.sleep(0.05)
            during["ready"] = (st, body)
            try:
                r = WSRun(http)
                r.send(json.dumps({"format": "pcm_s16le"}))
                r.wait(10)
                during["new"] = (r.close_code, r.close_reason)
            except Exception as e:  # noqa: BLE001
                during["new"] = (None, repr(e))

        tcp_thread = threading.Thread(target=tcp_client, daemon=True)
        probe_thread = threading.Thread(target=probe, daemon=True)
        tcp_thread.start()

        def hook(frac, run):
            if sigterm_at[0] is None and frac * dur >= 3.0:
                sigterm_at[0] = time.monotonic()
                srv.p.send_signal(signal.SIGTERM)
                probe_thread.start()
        run = ws_stream(http, pcm, {"format": "pcm_s16le"},
                        bytes_per_s=2 * RATE, speed=1.0, hook=hook, timeout=30)
        tcp_thread.join(35)
        probe_thread.join(20)
        check("j drain: the client gets close 1001",
              run.close_code == 1001,
              f"got {run.close_code} {run.close_reason!r}")
        t_sig = sigterm_at[0]
        after = [e for e in run.of("final") if e["_t"] >= t_sig]
        fw = textnorm.words(run.final_text())
        rw = textnorm.words(ref)
        # The words spoken in the first 3 s ("and so my fellow americans")
        # must all have come, and nothing but the reference's next words.
        dist = textnorm.edit_distance(rw[:len(fw)], fw)
        check("j drain: the client gets every final of the audio sent before "
              "SIGTERM", fw[:5] == rw[:5] and dist <= 1,
              f"text {run.final_text()!r}")
        note(f"j: {len(after)} final(s) after SIGTERM, text "
             f"{run.final_text()!r}")
        lines, state = during.get("tcp", ([], {}))
        tw = textnorm.words(" ".join(ln.split(" ", 2)[2] for ln in lines
                                     if len(ln.split(" ", 2)) == 3))
        check("j drain tcp: the words spoken before SIGTERM come as lines, "
              "then EOF", state.get("eof") and tw[:5] == rw[:5],
              f"lines {lines} state {state}")
        st, body = during.get("ready", (None, ""))
        check("j drain: /ready is 503 with reason draining while it drains",
              st == 503 and "draining" in body, f"{st} {body!r}")
        code, reason = during.get("new", (None, None))
        check("j drain: a new WebSocket stream gets close 1001 'draining'",
              code == 1001 and reason == "draining", f"{code} {reason!r}")
        try:
            rc = srv.p.wait(max(0.1, t_sig + 12 - time.monotonic()))
        except subprocess.TimeoutExpired:
            rc = None
        check("j drain: the supervisor exits with status 0", rc == 0,
              f"status {rc}")
        gone = wait_group_gone(srv.pgid,
                               max(0.1, t_sig + 12 - time.monotonic()))
        check("j drain: every process of the group is gone within "
              "drain-timeout + 2 s", gone,
              f"left: {group_procs(srv.pgid, live_only=False)}")
    finally:
        srv.stop(check_clean=False)
    srv2 = Server(name="j2", http_port=http, tcp_port=tcp, wait_ready=False)
    try:
        check("j drain: a new server on the same ports comes up (/ready 200)",
              srv2.http == http and srv2.tcp == tcp and srv2.wait_ready(60),
              f"ports {srv2.http} {srv2.tcp}")
    finally:
        srv2.stop()

    # The second speed: a second signal during the drain ends everything
    # at once, with status 1, whatever the streams are doing.
    srv3 = Server(["--drain-timeout", "30"], name="j3")
    try:
        pcm, dur, ref = audio(JFK)
        box = {}
        t = threading.Thread(target=lambda: box.update(run=ws_stream(
            srv3.http, pcm, {"format": "pcm_s16le"}, bytes_per_s=2 * RATE,
            speed=1.0, timeout=30)), daemon=True)
        t.start()
        time.sleep(3.0)
        # Stopped workers cannot flush, so the drain goes on until the
        # second signal.
        for pid in srv3.worker_pids():
            os.kill(pid, signal.SIGSTOP)
        srv3.p.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        check("j3: the drain is still waiting for the stopped workers",
              srv3.p.poll() is None, f"status {srv3.p.poll()}")
        t0 = time.monotonic()
        srv3.p.send_signal(signal.SIGTERM)
        try:
            rc = srv3.p.wait(5)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t0
        check(f"j3 second signal: the supervisor exits with status 1 at once "
              f"({took:.2f} s)", rc == 1 and took <= 2.0, f"status {rc}")
        check("j3 second signal: every process of the group is gone",
              wait_group_gone(srv3.pgid, 5),
              f"left: {group_procs(srv3.pgid, live_only=False)}")
        t.join(35)
    finally:
        srv3.stop(check_clean=False)


def test_k_supervisor_sigkill():
    srv = Server(name="k")
    try:
        data, dur, ref = audio(JFK, 3)
        done = threading.Event()
        res = {}

        def client():
            res["run"] = ws_stream(srv.http, data, {"format": "pcm_s16le"},
                                   bytes_per_s=2 * RATE, speed=8.0,
                                   timeout=30)
            done.set()
        t = threading.Thread(target=client, daemon=True)
        t.start()
        time.sleep(2.0)
        n = len(group_procs(srv.pgid))
        os.kill(srv.pid, signal.SIGKILL)
        t0 = time.monotonic()
        try:
            srv.p.wait(2)
        except subprocess.TimeoutExpired:
            pass
        gone = wait_group_gone(srv.pgid, max(0.1, t0 + 2 - time.monotonic()))
        check(f"k supervisor SIGKILL: all {n} processes of the group are "
              "gone within 2 s", gone,
              f"left: {group_procs(srv.pgid, live_only=False)}")
        done.wait(40)
        r = res.get("run")
        check("k supervisor SIGKILL: the client's connection ends",
              r is not None and r.closed.is_set(),
              "client still connected")
    finally:
        srv.stop(check_clean=False)


def opus_packets(pcm, rate=RATE, bitrate=24000):
    """Encodes s16le mono pcm into 20 ms Opus packets with the system's
    libopus (through ctypes; libopus0 comes with libopus-dev)."""
    name = ctypes.util.find_library("opus")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_encoder_create.argtypes = [ctypes.c_int, ctypes.c_int,
                                        ctypes.c_int,
                                        ctypes.POINTER(ctypes.c_int)]
    lib.opus_encode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                ctypes.c_char_p, ctypes.c_int32]
    lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
    err = ctypes.c_int()
    enc = lib.opus_encoder_create(rate, 1, 2048, ctypes.byref(err))  # VOIP
    if not enc or err.value != 0:
        return None
    # OPUS_SET_BITRATE_REQUEST (variadic opus_int32)
    lib.opus_encoder_ctl(ctypes.c_void_p(enc), 4002, ctypes.c_int32(bitrate))
    frame = rate // 50
    out = ctypes.create_string_buffer(4000)
    packets = []
    for off in range(0, len(pcm), 2 * frame):
        chunk = pcm[off:off + 2 * frame].ljust(2 * frame, b"\0")
        n = lib.opus_encode(enc, chunk, frame, out, len(out))
        if n < 0:
            lib.opus_encoder_destroy(enc)
            return None
        packets.append(out.raw[:n])
    lib.opus_encoder_destroy(enc)
    return packets


def test_l_ws_opus():
    """Opus packets over WebSocket, two of them malformed."""
    pcm, dur, ref = audio(JFK)
    packets = opus_packets(pcm)
    if packets is None:
        check("l opus: libopus encodes the test audio", False,
              "libopus (libopus0) not found or failed")
        return
    # A TOC byte announcing code 3 with zero frames, and one announcing two
    # equal frames in an odd number of bytes: both illegal.
    bad = [b"\x03\x00", b"\x01\x00"]
    at = len(packets) // 3
    srv = Server(name="l")
    try:
        run = WSRun(srv.http)
        run.send(json.dumps({"format": "opus"}))
        for i, p in enumerate(packets):
            if i == at:
                for b in bad:
                    run.send(b)
            if not run.send(p):
                break
        run.send(json.dumps({"type": "finish"}))
        run.timed_out = not run.wait(120)
        kb = sum(len(p) for p in packets) / 1024
        note(f"l opus: {len(packets)} packets, {kb:.1f} KiB for {dur:.1f} s "
             f"({kb * 8 * 1.024 / dur:.1f} kbit/s)")
        errs = run.of("error")
        check("l opus: each malformed packet gets an error event naming opus",
              len(errs) == len(bad) and
              all("opus" in str(e.get("message", "")).lower() for e in errs),
              f"errors: {errs}")
        check_ws_run("l ws jfk opus", run, ref, allow_errors=True)
    finally:
        srv.stop()


def test_m_idle_timeout():
    """Clients that stop sending (without closing) are flushed and ended
    after --idle-timeout."""
    pcm, dur, ref = audio(JFK)
    part = pcm[:2 * RATE * 7]          # "... ask not what your country can"
    srv = Server(["--idle-timeout", "2"], name="m")
    try:
        run = WSRun(srv.http)
        run.send(json.dumps({"format": "pcm_s16le"}))
        for off in range(0, len(part), 3200):
            run.send(part[off:off + 3200])
        t_quiet = time.monotonic()
        closed = run.closed.wait(30)
        took = time.monotonic() - t_quiet
        check("m ws: the quiet stream is closed with 1008 'idle timeout'",
              closed and run.close_code == 1008 and
              "idle" in (run.close_reason or ""),
              f"closed {closed}, code {run.close_code} "
              f"{run.close_reason!r} after {took:.1f} s")
        words = textnorm.words(run.final_text())
        # (The model may add a word the cut audio suggests: "can do".)
        check("m ws: the words sent before going quiet were flushed first "
              "(... 'your country' among the last words)",
              "country" in words[-3:] and "fellow" in words,
              f"text {run.final_text()!r}")
        # TCP: the same, then EOF after the last line.
        s = socket.create_connection(("127.0.0.1", srv.tcp), timeout=30)
        s.sendall(part)
        buf = bytearray()
        t_quiet = time.monotonic()
        eof = False
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    eof = True
                    break
                buf.extend(d)
        except OSError:
            pass
        s.close()
        lines = [ln for ln in buf.decode("utf-8", "replace").split("\n") if ln]
        hyp = " ".join(LINE_RE.match(ln).group(3) for ln in lines
                       if LINE_RE.match(ln))
        check("m tcp: the quiet connection gets its lines, then EOF",
              eof and "country" in textnorm.words(hyp)[-3:] and
              "fellow" in textnorm.words(hyp),
              f"eof {eof} after {time.monotonic() - t_quiet:.1f} s, "
              f"lines {lines}")
        st, _, body = http_get(srv.http, "/ready")
        check("m: /ready is 200 afterwards", st == 200, f"{st} {body}")
    finally:
        srv.stop()


TESTS = [
    ("a", test_a_tcp_jfk), ("b", test_b_ws_jfk), ("c", test_c_ws_f32_48k),
    ("d", test_d_abrupt_tcp), ("e", test_e_ws_garbage),
    ("f", test_f_overload), ("g", test_g_worker_sigkill),
    ("h", test_h_worker_sigstop), ("h2", test_h2_hang_in_inference),
    ("i", test_i_crash_loop),
    ("j", test_j_drain), ("k", test_k_supervisor_sigkill),
    ("l", test_l_ws_opus), ("m", test_m_idle_timeout),
]


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sotto", required=True)
    # The servers' binary, when it is not --sotto's (make tsan runs its
    # client under ThreadSanitizer against a plain server).
    ap.add_argument("--server-sotto", default="")
    ap.add_argument("--model", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="",
                    help="comma-separated test letters (default: all)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--server-log", action="store_true",
                    help="echo the servers' stderr")
    ARGS = ap.parse_args()

    if IMPORT_ERROR:
        print(f"test_serve: {IMPORT_ERROR}", file=sys.stderr)
        return 2
    if not os.access(ARGS.sotto, os.X_OK):
        print(f"test_serve: {ARGS.sotto} is not executable", file=sys.stderr)
        return 2
    try:
        load_manifest(ARGS.shared)
    except (OSError, ValueError, wave.Error) as e:
        print(f"test_serve: {e}", file=sys.stderr)
        return 2
    if JFK not in AUDIO:
        print(f"test_serve: {JFK} missing from {ARGS.shared}/audio/manifest.tsv",
              file=sys.stderr)
        return 2
    set_subreaper()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    return run_tests(TESTS, ARGS.only, "test_serve")


def parse_args(doc):
    """The options every end-to-end test script takes, into ARGS (the
    scripts beside this one share them)."""
    global ARGS
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--sotto", required=True)
    # The servers' binary, when it is not --sotto's (make tsan runs its
    # client under ThreadSanitizer against a plain server).
    ap.add_argument("--server-sotto", default="")
    ap.add_argument("--model", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--server-log", action="store_true")
    ARGS = ap.parse_args()
    return ARGS


def load_manifest(shared, with_long=True):
    """Loads every recording of SHARED/audio/manifest.tsv that is there into
    AUDIO, in the manifest's order (the long LJ Speech file only when
    with_long)."""
    with open(os.path.join(shared, "audio", "manifest.tsv"), newline="") as f:
        refs = {r["file"]: r["transcript"] for r in csv.DictReader(f, delimiter="\t")}
    for name, ref in refs.items():
        path = os.path.join(shared, "audio", name)
        if os.path.exists(path) and (with_long or name != LONG):
            AUDIO[name] = (load_wav(path), ref)


def summary(prog, elapsed):
    """Prints the checks' summary; returns the exit status."""
    failed = [n for n, ok in RESULTS if not ok]
    print(f"{prog}: {len(RESULTS)} checks, {len(failed)} failed ({elapsed:.0f} s)")
    for n in failed:
        print(f"  FAILED: {n}")
    print(f"{prog}: " + ("FAILED" if failed else "all checks passed"))
    return 1 if failed or not RESULTS else 0


def jfk_pcm():
    """jfk.wav as s16le bytes at 16 kHz (AUDIO must hold it)."""
    return audio(JFK)[0]


def run_tests(tests, only, prog):
    """Runs the (letter, function) tests selected by `only` (comma-separated
    letters; all when empty), stops the servers a test left running, prints
    the summary; returns the exit status.  test_stream.py uses it too."""
    only = set(filter(None, only.split(",")))
    t_all = time.monotonic()
    for letter, fn in tests:
        if only and letter not in only:
            continue
        t0 = time.monotonic()
        print(f"== {letter}: {fn.__name__[7:]}", flush=True)
        STARTED.clear()
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            # The test's own cleanup has usually stopped its servers by
            # now; their logs are what tells why it died.
            check(f"{letter} {fn.__name__[7:]}: runs without an exception",
                  False, "".join(traceback.format_exception(e)).rstrip(),
                  servers=list(STARTED))
        finally:
            for srv in list(CURRENT):     # a test that died half-way
                srv.stop(check_clean=False)
        print(f"   ({time.monotonic() - t0:.1f} s)", flush=True)
    return summary(prog, time.monotonic() - t_all)


if __name__ == "__main__":
    sys.exit(main())
