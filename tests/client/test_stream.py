#!/usr/bin/env python3
"""End-to-end tests of `sotto stream` against a live `sotto serve`.

Usage:
    test_stream.py --sotto build/sotto --model DIR --shared ../shared
                   [--quick] [--only a,b,...] [--verbose] [--server-log]

The servers are started, watched and stopped by tests/server/test_serve.py's
Server class (real processes on ephemeral loopback ports, the real model);
the client is the real `sotto stream`, run as a subprocess, in a pty where
the test is about the terminal or Ctrl+C.

Tests:
  a  sources and transports: jfk.wav over WebSocket (pcm and opus) and over
     TCP, an Ogg/Opus file over WebSocket (pcm and opus) and TCP, raw s16le
     on stdin at 16 kHz over TCP and WebSocket opus and at 48 kHz over
     WebSocket, --json events; the text of each
  b  Opus against PCM on the sentence-length recordings joined (67 s): the
     Opus path's WER is within 2 points of the PCM path's
  c  exit codes and hostile input: bad usage, a missing file, lying WAV
     headers (0 channels, rate 0, float at 16 bits, a 2 GB data chunk, a
     header cut short), Ogg/Opus truncated mid-page, with an illegal TOC
     byte, with a bad page CRC, or headers only; no microphone, no server,
     a refused stream (1013 and its reason)
  d  Ctrl+C in a pty: the first one flushes (exit 0 within 2 s, with the
     words of the partial on screen printed as finals); two exit at once
     (within 200 ms of the second); against a SIGSTOPped server the first
     still ends the client within 2 s
  e  --reconnect: the gateway is SIGKILLed mid-stream; the client reconnects
     to the restarted one, resends from the first unconfirmed sample and
     ends with the whole transcript, nothing lost or repeated at the cut
  f  the microphone path, through ALSA's file plugin (an .asoundrc in a
     temporary HOME feeds jfk.wav as the capture device): the words come
     back and Ctrl+C ends it

Every line of output is "ok NAME" or "FAIL NAME: why", then a summary.
Exit status: 0 all checks passed, 1 a check failed, 2 usage/setup error.
"""
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import wave
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "server"))
import test_serve as ts  # noqa: E402
from test_serve import check, note, textnorm  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
OPUS_FIXTURE = os.path.join(REPO, "tests", "data", "jfk.opus")
JFK_WORDS = textnorm.words(
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country.")


# ---- running the client ---------------------------------------------------

def client(args, stdin_bytes=None, timeout=240, env=None):
    """Runs `sotto stream ARGS` to the end: (exit code, stdout, stderr)."""
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run([ts.ARGS.sotto, "stream"] + list(args),
                       input=stdin_bytes,
                       stdin=None if stdin_bytes is not None else subprocess.DEVNULL,
                       capture_output=True, timeout=timeout, env=e)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


class PtyClient:
    """`sotto stream` on a pseudo-terminal: stdout and stderr are the tty,
    as for a user at a terminal; the output is collected by a reader."""

    def __init__(self, args, env=None):
        e = dict(os.environ)
        if env:
            e.update(env)
        self.master, slave = pty.openpty()
        self.p = subprocess.Popen([ts.ARGS.sotto, "stream"] + list(args),
                                  stdin=subprocess.DEVNULL, stdout=slave,
                                  stderr=slave, env=e)
        os.close(slave)
        self.buf = b""

    def pump(self, timeout):
        """Reads what the client wrote within timeout seconds."""
        r, _, _ = select.select([self.master], [], [], timeout)
        if r:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                chunk = b""
            self.buf += chunk
            return bool(chunk)
        return False

    def text(self):
        return self.buf.decode("utf-8", "replace")

    def wait_for(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.text()):
                return True
            if self.p.poll() is not None and not self.pump(0.05):
                return pred(self.text())
            self.pump(0.05)
        return pred(self.text())

    def wait_exit(self, timeout):
        """Exit code, or None if it is still running after timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.p.poll()
            if rc is not None:
                while self.pump(0.02):
                    pass
                return rc
            self.pump(0.01)
        return None

    def final_lines(self):
        """The finals: the lines ended by a newline, with the status
        line's escape sequences and rewrites removed."""
        out = []
        for line in self.text().replace("\r\n", "\n").split("\n")[:-1]:
            line = line.split("\r")[-1]
            line = line.replace("\x1b[K", "").replace("\x1b[2m", "")
            line = line.replace("\x1b[0m", "").strip()
            if line and not line.startswith("sotto:") and not line.startswith("["):
                out.append(line)
        return out

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        os.close(self.master)


def final_text(stdout):
    return " ".join(l.strip() for l in stdout.splitlines() if l.strip())


def server():
    return ts.Server(name="server")


def sanitized(binary):
    """Whether binary is a sanitizer build (it links ASan or TSan), whose
    inference runs several times slower than a release build's."""
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "libasan" in out or "libtsan" in out


def ws_url(srv):
    return f"ws://127.0.0.1:{srv.http}/v1/stream"


def tcp_url(srv):
    return f"tcp://127.0.0.1:{srv.tcp}"


def write_wav(path, pcm16):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(ts.RATE)
        w.writeframes(pcm16)


def mix_wav():
    """The sentence-length recordings joined (test_serve's mix_audio), as a
    WAV file in a temporary folder: (path, seconds, reference text)."""
    pcm, dur, ref = ts.mix_audio()
    path = os.path.join(tempfile.mkdtemp(prefix="sotto-stream-test-"), "mix.wav")
    write_wav(path, pcm)
    return path, dur, ref


# ---- Ogg surgery (for the hostile files) -----------------------------------

def ogg_with_bad_toc(data):
    """The file with the first packet of a page in the middle made illegal
    (TOC code 3 with a frame count of 0), and the page's CRC fixed so that
    only the packet is wrong.  (libopusfile drops bad packets silently;
    the decoder notices the missing samples from the page's granule
    position, which it cannot do on the first audio page.)"""
    pages = ts.ogg_pages(data)
    # A page that starts with a packet of its own (not continued).
    off, hlen, blen = next(p for p in pages[len(pages) // 2:]
                           if not data[p[0] + 5] & 1)
    b = bytearray(data)
    b[off + hlen] = 0x03              # config 0, mono, code 3
    b[off + hlen + 1] = 0x00          # ... with M = 0 frames: illegal
    return ts.ogg_fix_crc(b, off, hlen + blen)


# ---- tests ----------------------------------------------------------------

def test_a_sources():
    pcm, dur, ref = ts.audio(ts.JFK)
    jfk = os.path.join(ts.ARGS.shared, "audio", ts.JFK)
    srv = server()
    try:
        runs = [
            ("ws pcm wav", ["-u", ws_url(srv), jfk], None),
            ("ws opus wav", ["-u", ws_url(srv), "-F", "opus", jfk], None),
            ("tcp wav", ["-u", tcp_url(srv), jfk], None),
            ("ws pcm ogg/opus file", ["-u", ws_url(srv), OPUS_FIXTURE], None),
            ("ws opus ogg/opus file", ["-u", ws_url(srv), "-F", "opus", OPUS_FIXTURE],
             None),
            ("tcp ogg/opus file", ["-u", tcp_url(srv), OPUS_FIXTURE], None),
            ("tcp stdin 16 kHz", ["-u", tcp_url(srv), "-"], pcm),
            ("ws opus stdin 16 kHz", ["-u", ws_url(srv), "-F", "opus", "-"], pcm),
        ]
        # stdin at 48 kHz: the client resamples.
        x = ts.np.frombuffer(pcm, dtype="<i2").astype(ts.np.float64)
        x48 = ts.np.clip(ts.np.round(ts.resample(x, ts.RATE, 48000)), -32768, 32767)
        runs.append(("ws stdin 48 kHz", ["-u", ws_url(srv), "--rate", "48000", "-"],
                     x48.astype("<i2").tobytes()))
        for name, args, data in runs:
            rc, out, err = client(args, stdin_bytes=data)
            hyp = final_text(out)
            w = ts.wer(ref, hyp)
            check(f"a {name}: exit 0 and the JFK sentence (WER {w:.3f})",
                  rc == 0 and w <= 0.10, f"rc {rc} out {out!r} err {err[-500:]!r}")

        rc, out, err = client(["-u", ws_url(srv), "--json", jfk])
        events = []
        try:
            events = [json.loads(l) for l in out.splitlines() if l.strip()]
        except ValueError as e:
            err += f" (bad JSON line: {e})"
        types = [e.get("type") for e in events]
        finals = [e for e in events if e.get("type") == "final"]
        hyp = "".join(e["text"] for e in finals)
        ends = [e["end"] for e in finals]
        check("a json: one event per line, ready first, finals and utterance_end",
              rc == 0 and types[:1] == ["ready"] and finals and
              "utterance_end" in types, f"rc {rc} types {types} err {err[-300:]!r}")
        check("a json: the finals' text is the sentence, times increase",
              ts.wer(ref, hyp) <= 0.10 and ends == sorted(ends) and
              all(w["start"] <= w["end"] for e in finals for w in e["words"]),
              f"{hyp!r} {ends}")
    finally:
        srv.stop()


def test_b_opus_vs_pcm():
    path, dur, ref = mix_wav()
    srv = server()
    try:
        # Both at once: the two workers take one stream each.
        procs = {}
        for fmt in ("pcm", "opus"):
            procs[fmt] = subprocess.Popen(
                [ts.ARGS.sotto, "stream", "-u", ws_url(srv), "-F", fmt, path],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
        res = {}
        for fmt, p in procs.items():
            out, err = p.communicate(timeout=600)
            res[fmt] = (p.returncode, out.decode(), err.decode())
        w = {}
        for fmt, (rc, out, err) in res.items():
            w[fmt] = ts.wer(ref, final_text(out))
            check(f"b {fmt}: exit 0, WER {w[fmt]:.3f} on {dur:.0f} s",
                  rc == 0 and w[fmt] <= 0.15, f"rc {rc} err {err[-500:]!r}")
        check(f"b opus WER {w['opus']:.3f} within 2 points of pcm {w['pcm']:.3f}",
              w["opus"] <= w["pcm"] + 0.02, "")
    finally:
        srv.stop()


def test_c_exit_codes():
    tmp = tempfile.mkdtemp(prefix="sotto-stream-test-")
    jfk = os.path.join(ts.ARGS.shared, "audio", ts.JFK)
    with open(jfk, "rb") as f:
        wav = f.read()
    with open(OPUS_FIXTURE, "rb") as f:
        ogg = f.read()
    hostile = {}
    # A WAV header that claims 0 channels.
    b = bytearray(wav)
    b[22:24] = struct.pack("<H", 0)
    hostile["wav with 0 channels"] = bytes(b)
    # A WAV header whose sample rate is 0.
    b = bytearray(wav)
    b[24:28] = struct.pack("<I", 0)
    hostile["wav with rate 0"] = bytes(b)
    # A WAV cut inside its header.
    hostile["wav cut inside its header"] = wav[:30]
    # A WAV that says its samples are 16-bit floats (format 3, 16 bits).
    b = bytearray(wav)
    b[20:22] = struct.pack("<H", 3)
    hostile["wav claiming 16-bit float samples"] = bytes(b)
    # A WAV whose data chunk claims 2 GB: the samples that are there are
    # read, and the lie costs nothing (libsndfile clamps to the file).
    b = bytearray(wav)
    at = wav.index(b"data")
    b[at + 4:at + 8] = struct.pack("<I", 0x7FFFFFF0)
    hostile["wav whose data chunk claims 2 GB"] = bytes(b)
    pages = ts.ogg_pages(ogg)
    off, hlen, blen = pages[len(pages) // 2]
    hostile["ogg/opus truncated mid-page"] = ogg[:off + hlen + blen // 2]
    hostile["ogg/opus with an illegal TOC byte"] = ogg_with_bad_toc(ogg)
    b = bytearray(ogg)
    off, hlen, blen = pages[3]
    b[off + hlen + 5] ^= 0xFF         # a body byte: the CRC no longer matches
    hostile["ogg/opus page with a bad CRC"] = bytes(b)
    hostile["ogg/opus headers only"] = ogg[:pages[2][0]]

    srv = server()
    try:
        opened = ts.metric(srv, "sotto_streams_total")
        for name, data in hostile.items():
            path = os.path.join(tmp, name.replace(" ", "_").replace("/", "_"))
            with open(path, "wb") as f:
                f.write(data)
            rc, out, err = client(["-u", ws_url(srv), path], timeout=60)
            msg = err.strip().splitlines()[-1] if err.strip() else ""
            # A file whose damage lies past its start may decode up to the
            # damage: then it must still end cleanly (0) with text, or be
            # refused with a message (2).
            ok = (rc == 2 and msg.startswith("sotto: ") and len(msg) > 20) or \
                 (rc == 0 and name == "ogg/opus truncated mid-page" and out.strip()) or \
                 (rc == 0 and "claims 2 GB" in name and
                  ts.wer(ts.AUDIO[ts.JFK][1], final_text(out)) <= 0.10)
            check(f"c {name}: a clear error (exit 2) or a clean decode (exit {rc})", ok,
                  f"rc {rc} out {out!r} err {err!r}")
            if ts.ARGS.verbose:
                note(f"{name}: {msg}")
        # Only the files that decode (truncated, lying about their length)
        # may have opened streams: refused files never reach the server.
        delta = ts.metric(srv, "sotto_streams_total") - opened
        check("c refused files never reach the server", delta <= 2, f"{delta} streams")
        rc, out, err = client(["-u", ws_url(srv), "--format", "flac", jfk])
        check("c bad usage: exit 2", rc == 2, f"{rc} {err!r}")
        rc, out, err = client(["-u", tcp_url(srv), "-F", "opus", jfk])
        check("c opus over tcp: exit 2 with the reason",
              rc == 2 and "ws://" in err, f"{rc} {err!r}")
        rc, out, err = client(["-u", ws_url(srv), os.path.join(tmp, "nope.wav")])
        check("c a missing file: exit 2", rc == 2 and "nope.wav" in err, f"{rc} {err!r}")
        rc, out, err = client(["-u", tcp_url(srv), "-"], stdin_bytes=b"")
        check("c empty stdin: exit 2", rc == 2 and "without a single sample" in err,
              f"{rc} {err!r}")
        rc, out, err = client(["--device", "hw:97", "-u", ws_url(srv), "mic"])
        check("c no microphone: exit 2, the message says so",
              rc == 2 and "no microphone" in err, f"{rc} {err!r}")
    finally:
        srv.stop()

    # No server at all.
    s = ts.socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    rc, out, err = client(["-u", f"ws://127.0.0.1:{port}/v1/stream", jfk])
    check("c no server: exit 1 with the reason", rc == 1 and "connect" in err,
          f"{rc} {err!r}")

    # A refused stream: 1013 with the reason printed.
    srv = ts.Server(extra=["--max-streams", "1"], name="max1")
    try:
        hold = subprocess.Popen([ts.ARGS.sotto, "stream", "-u", ws_url(srv),
                                 "--realtime", jfk], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and \
                ts.metric(srv, "sotto_streams_active") < 1:
            time.sleep(0.1)
        rc, out, err = client(["-u", ws_url(srv), jfk])
        check("c at capacity: exit 1, the close code and reason printed",
              rc == 1 and "1013" in err, f"{rc} {err!r}")
        hold.kill()
        hold.wait()
    finally:
        srv.stop()


def test_d_ctrl_c():
    jfk = os.path.join(ts.ARGS.shared, "audio", ts.JFK)
    srv = server()
    try:
        # First Ctrl+C: once "country" is on screen in a partial or a
        # final, interrupt; the flush must print it as a final.
        c = PtyClient(["-u", ws_url(srv), "--realtime", jfk])
        try:
            seen = c.wait_for(lambda t: "country" in t.lower(), 30)
            t0 = time.monotonic()
            c.p.send_signal(signal.SIGINT)
            rc = c.wait_exit(5)
            took = time.monotonic() - t0
            finals = " ".join(c.final_lines())
            check(f"d first Ctrl+C: exit 0 within 2 s ({took:.2f} s)",
                  seen and rc == 0 and took <= 2.0, f"seen {seen} rc {rc} {c.text()!r}")
            check("d first Ctrl+C: the words on screen are printed as finals",
                  "country" in textnorm.words(finals) and
                  textnorm.words(finals)[:4] == JFK_WORDS[:4], f"{finals!r}")
        finally:
            c.close()

        # First Ctrl+C without --realtime, on a long file: the client sends
        # as fast as the server keeps up, but never so far ahead that the
        # flush cannot finish within the deadline (without the bound the
        # server held two minutes of the file and the client exited 1).
        mix, _, _ = mix_wav()
        # A sanitized server's last pass can take longer than the 1.5 s the
        # client waits; the client must still be out within 2 s, saying why.
        slow = sanitized(getattr(ts.ARGS, "server_sotto", "") or ts.ARGS.sotto)
        for url in (ws_url(srv), tcp_url(srv)):
            proto = url.split(":")[0]
            c = PtyClient(["-u", url, mix])
            try:
                seen = c.wait_for(lambda t: len(c.final_lines()) >= 3, 60)
                t0 = time.monotonic()
                c.p.send_signal(signal.SIGINT)
                rc = c.wait_exit(5)
                took = time.monotonic() - t0
                flushed = rc == 0 or (slow and rc == 1 and "not confirmed" in c.text())
                check(f"d first Ctrl+C, {proto}, no --realtime, 67 s file: out within "
                      f"2 s ({took:.2f} s) with exit {rc} (0; from a sanitized server "
                      "1 with the reason also counts), finals printed",
                      seen and flushed and rc is not None and took <= 2.0 and
                      len(c.final_lines()) >= 3,
                      f"seen {seen} rc {rc} {c.text()[-400:]!r}")
            finally:
                c.close()

        # Two Ctrl+C: out at once.
        c = PtyClient(["-u", ws_url(srv), "--realtime", jfk])
        try:
            c.wait_for(lambda t: "fellow" in t.lower(), 30)
            c.p.send_signal(signal.SIGINT)
            time.sleep(0.01)
            t0 = time.monotonic()
            c.p.send_signal(signal.SIGINT)
            rc = c.wait_exit(2)
            took = time.monotonic() - t0
            check(f"d second Ctrl+C: exit within 200 ms ({took * 1000:.0f} ms), code 130",
                  rc == 130 and took <= 0.2, f"rc {rc}")
        finally:
            c.close()

        # A server that stops answering: every process SIGSTOPped.
        c = PtyClient(["-u", ws_url(srv), "--realtime", jfk])
        pids = []
        try:
            c.wait_for(lambda t: "fellow" in t.lower(), 30)
            pids = [srv.pid] + list(srv.children())
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            time.sleep(0.5)
            t0 = time.monotonic()
            c.p.send_signal(signal.SIGINT)
            rc = c.wait_exit(5)
            took = time.monotonic() - t0
            check(f"d Ctrl+C against a stopped server: ends within 2 s "
                  f"({took:.2f} s), exit {rc}, the reason printed",
                  rc == 1 and took <= 2.0 and "not confirmed" in c.text(),
                  f"rc {rc} {c.text()[-400:]!r}")
        finally:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            c.close()
        # The server goes on (its watchdog may have restarted workers).
        ok = srv.wait_ready(60)
        rc, out, err = client(["-u", ws_url(srv), jfk])
        check("d the server serves again after SIGCONT",
              ok and rc == 0 and ts.wer(ts.AUDIO[ts.JFK][1], final_text(out)) <= 0.10,
              f"ready {ok} rc {rc} {out!r} {err[-300:]!r}")
    finally:
        srv.stop()


def test_e_reconnect():
    path, dur, ref = mix_wav()
    srv = server()
    try:
        # The undisturbed run, for comparison.
        rc, out0, err = client(["-u", ws_url(srv), "--json", path], timeout=600)
        base = "".join(e["text"] for e in map(json.loads, out0.splitlines())
                       if e.get("type") == "final")
        check("e undisturbed run: exit 0", rc == 0, f"{rc} {err[-300:]!r}")

        p = subprocess.Popen([ts.ARGS.sotto, "stream", "-u", ws_url(srv), "--json",
                              "--reconnect", "--realtime", path],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        lines = []
        # Wait for some finals, then kill the gateway.
        while True:
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
            if sum(1 for l in lines if b'"final"' in l) >= 6:
                break
        gw = srv.gateway_pid()
        os.kill(gw, signal.SIGKILL)
        out, err = p.communicate(timeout=600)
        lines += out.splitlines()
        events = [json.loads(l) for l in lines if l.strip()]
        finals = [e for e in events if e.get("type") == "final"]
        hyp = "".join(e["text"] for e in finals)
        err = err.decode("utf-8", "replace")
        w, w0 = ts.wer(ref, hyp), ts.wer(ref, base)
        check("e reconnect: exit 0 after the gateway's death, reconnection noted",
              p.returncode == 0 and "reconnected" in err,
              f"rc {p.returncode} err {err[-600:]!r}")
        starts = [e["start"] for e in finals]
        check(f"e reconnect: the transcript is whole (WER {w:.3f}, undisturbed "
              f"{w0:.3f}), times keep increasing",
              w <= w0 + 0.03 and starts == sorted(starts),
              f"{hyp!r}")
        d = ts.ins_del(base, hyp)
        check(f"e reconnect: {d} words inserted or deleted against the "
              "undisturbed run", d <= 3, f"base {base!r}\nhyp {hyp!r}")
    finally:
        srv.stop()


def test_f_mic():
    jfk = os.path.join(ts.ARGS.shared, "audio", ts.JFK)
    home = tempfile.mkdtemp(prefix="sotto-alsa-")
    raw = os.path.join(home, "jfk.raw")
    pcm, _, _ = ts.audio(ts.JFK)
    with open(raw, "wb") as f:
        f.write(pcm + bytes(ts.RATE * 2 * 2))
    with open(os.path.join(home, ".asoundrc"), "w") as f:
        f.write('pcm.sottotest {\n type file\n slave.pcm "null"\n'
                f' file "/dev/null"\n infile "{raw}"\n format "raw"\n}}\n')
    srv = server()
    try:
        c = PtyClient(["-u", ws_url(srv), "--device", "sottotest", "mic"],
                      env={"HOME": home})
        try:
            heard = c.wait_for(lambda t: textnorm.words(" ".join(
                c.final_lines()))[-3:] == ["for", "your", "country"], 60)
            c.p.send_signal(signal.SIGINT)
            rc = c.wait_exit(5)
            finals = " ".join(c.final_lines())
            check("f mic (ALSA file plugin): the JFK sentence, then Ctrl+C exits 0",
                  heard and rc == 0 and
                  ts.wer(ts.AUDIO[ts.JFK][1], finals) <= 0.10,
                  f"rc {rc} {c.text()[-600:]!r}")
        finally:
            c.close()
    finally:
        srv.stop()


TESTS = [("a", test_a_sources), ("b", test_b_opus_vs_pcm), ("c", test_c_exit_codes),
         ("d", test_d_ctrl_c), ("e", test_e_reconnect), ("f", test_f_mic)]


def main():
    ts.parse_args(__doc__)
    if ts.IMPORT_ERROR:
        print(f"test_stream: {ts.IMPORT_ERROR}", file=sys.stderr)
        return 2
    ts.load_manifest(ts.ARGS.shared, with_long=False)
    ts.set_subreaper()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    return ts.run_tests(TESTS, ts.ARGS.only, "test_stream")


if __name__ == "__main__":
    sys.exit(main())
