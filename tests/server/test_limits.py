#!/usr/bin/env python3
"""End-to-end tests of `sotto serve`'s limits on what a client sends, each
at its value and just past it (docs/limits.md lists every limit and the
test that checks it; the limits checked elsewhere are not repeated here).

Usage:
    test_limits.py --sotto build/sotto --model DIR --shared ../shared
                   [--quick] [--only a,b] [--verbose] [--server-log]

The server is started, watched and stopped by test_serve.py's Server class
(real processes on ephemeral loopback ports, the real model).

Tests:
  a  text messages: a native config of exactly SOTTO__SERVE_MAX_CONTROL
     (4096) bytes is taken and the stream transcribes; one byte more gets
     close 1009; on a server with --max-frame 64K, a Realtime append at its
     own limit (64K / 3 * 4 + 4096 bytes) is taken, one past it gets 1009
  b  --max-stream-seconds 3: a WebSocket stream of jfk.wav gets the words
     of its first 3 s, then close 1008 "maximum stream duration reached";
     a client that streams without pause gets the 1008 frame too, and the
     closing handshake (the server reads on until the client's close, then
     ends the connection without a reset); a raw TCP stream gets its lines, none past 3 s, then EOF; an OpenAI
     upload of jfk.wav (11 s) gets 413 file_too_large naming the flag
  c  float samples: a pcm_f32le stream with one sample beyond
     SOTTO_MAX_SAMPLE (1000) gets an error event naming the sample (not
     "out of memory"), and the stream goes on to the JFK sentence
  d  headers: a request with more header bytes than libwebsockets holds
     (SOTTO__GW_MAX_HEADER_DATA, 4096) is dropped, one with 3000 is served;
     with --api-key, an Authorization header longer than the server reads
     (SOTTO__SERVE_MAX_KEY + 256 bytes) counts as absent: 401; the same key
     with a few trailing spaces is taken
  e  descriptors (ulimit -n 64): 120 idle connections to the HTTP and raw
     TCP ports do not make the gateway spin, crash or leak: it stays the
     same process, uses under half a CPU while they are held, and once they
     are gone it answers /health and streams the JFK sentence
  f  worker memory (RLIMIT_AS): with --worker-memory 128M no worker can
     load the model: /ready says fatal, a stream is refused with 1013 (a
     client streaming without pause too, with the closing handshake; one
     that never answers the close frame is dropped), the log names the
     option; and a worker whose address space is cut to what
     it uses (prlimit, as memory pressure would) runs out of memory in a
     stream's first pass: it exits with status 75, the stream is replayed
     on its restarted worker, and the client gets a warning and the whole
     JFK sentence; with the limit set just above what an idle worker maps,
     every try of a stream fails, and after its second worker death the
     stream ends with error stream_crashes and close 1011, and a REST
     upload gets 500 (out of memory) from a worker that lives on.  Sanitizer
     builds cannot limit their address space (the server says it ignores
     the option), so there f only checks that
  g  the other dialects and the REST form: a Realtime session.update with
     rate 7999 gets error invalid_value and the session goes on; Wyoming
     audio-start with rate 7999 or width 1 gets an error event naming it,
     and an audio-chunk in another format than its audio-start gets one
     too; a POST without a file part is 400 "the request has no file
     field", one with two is 400 "send one file"; an Ogg/Opus file whose
     last page claims over 4 hours is 413 file_too_large; a 6000-byte model
     field is taken and a 9000-byte one (past the 8192 bytes of form
     storage) is 400 "malformed"; a WhisperLive client
     refused at capacity that never sends its first message is dropped
     (within 15 s) without a WAIT
  h  the drain deadline: with --drain-timeout 1, a stream whose worker is
     stopped (SIGSTOP) cannot flush; after SIGTERM it is closed with 1001
     anyway, the log says the deadline passed, and the server exits
  i  SOTTO__WORKER_MAX_STREAMS: with one worker and --max-streams 257,
     256 streams (a config and 0.1 s of silence each) open on the worker;
     the 257th gets an error
     event "too many streams on this worker (limit 256)" and close 1000,
     and the others still stream (one of them gets the JFK sentence)
  j  a stream left waiting when no worker can run (its worker killed, the
     model folder gone before its successor loads, so every worker exited
     78): error event no_worker, close 1013, and the log says why
  k  a REST job whose worker crashes in it (fault injection, test builds
     only): rerun once, then 500 engine_crash after exactly two deaths

Every line of output is "ok NAME" or "FAIL NAME: why", then a summary.
Exit status: 0 all checks passed, 1 a check failed, 2 usage/setup error.
"""
import base64
import json
import time
import os
import signal
import tempfile
import shutil
import socket
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_serve as ts  # noqa: E402
from test_serve import check, note, textnorm  # noqa: E402

IMPORT_ERROR = ts.IMPORT_ERROR
try:
    import numpy as np
except ImportError as e:  # pragma: no cover
    IMPORT_ERROR = IMPORT_ERROR or f"{e} (pip install numpy)"

JFK_REF = ("And so my fellow Americans, ask not what your country can do for "
           "you, ask what you can do for your country.")
MAX_CONTROL = 4096          # SOTTO__SERVE_MAX_CONTROL, src/server/server.h
MAX_KEY = 255               # SOTTO__SERVE_MAX_KEY
MAX_SAMPLE = 1000.0         # SOTTO_MAX_SAMPLE, include/sotto.h
KEY = "limits-Key_0123456789"


def padded_config(size):
    """A native config message of exactly size bytes (spaces pad it)."""
    head = json.dumps({"type": "config", "format": "pcm_s16le", "sample_rate": 16000})
    assert head.endswith("}")
    return head[:-1] + " " * (size - len(head)) + "}"


def test_a_text_messages():
    pcm = ts.jfk_pcm()
    srv = ts.Server(["--max-frame", "65536"], name="a")
    try:
        msg = padded_config(MAX_CONTROL)
        check("a: the config is exactly the limit", len(msg.encode()) == MAX_CONTROL)
        run = ts.WSRun(srv.http)
        run.send(msg)
        for off in range(0, len(pcm), 16000):
            run.send(pcm[off:off + 16000])
        run.send(json.dumps({"type": "finish"}))
        run.wait(120)
        check("a native: a 4096-byte config is taken, the stream transcribes, close 1000",
              run.close_code == 1000 and not run.of("error") and
              ts.wer(JFK_REF, run.final_text()) <= 0.1,
              f"{run.close_code} {run.of('error')[:2]} {run.final_text()!r}")
        run = ts.WSRun(srv.http)
        run.send(padded_config(MAX_CONTROL + 1))
        run.wait(20)
        check("a native: a 4097-byte text message gets close 1009",
              run.close_code == 1009, f"{run.close_code} {run.close_reason!r}")

        # Realtime's text messages carry base64 audio: their limit is the
        # binary one's in base64, plus a control message's worth.
        limit = 65536 // 3 * 4 + MAX_CONTROL
        for size, want in ((limit, None), (limit + 1, 1009)):
            ws = ts.ws_connect(f"ws://127.0.0.1:{srv.http}/v1/realtime?intent=transcription",
                               max_size=None, proxy=None, ping_interval=None)
            ws.recv(10)     # session.created
            head = '{"type": "input_audio_buffer.append", "audio": "'
            body = base64.b64encode(bytes(48000)).decode()
            # Spaces before the closing brace bring it to exactly size.
            text = head + body + '"' + " " * (size - len(head) - len(body) - 2) + "}"
            code, errors = None, []
            try:
                ws.send(text)
                ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
                while True:
                    m = json.loads(ws.recv(10))
                    if m.get("type") == "error":
                        errors.append(m)
                    if m.get("type") == "input_audio_buffer.cleared":
                        break
            except ts.ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd is not None else 1006
            except TimeoutError:
                code = "timeout"
            ws.close()
            if want is None:
                check(f"a realtime: a {size}-byte append (the limit) is taken",
                      code is None and not errors and len(text) == size, f"{code} {errors}")
            else:
                check(f"a realtime: a {size}-byte append gets close 1009", code == 1009,
                      f"{code} {errors}")

        # Decoded audio over --max-frame in a message under the text limit:
        # an error event, and the session goes on.
        ws = ts.ws_connect(f"ws://127.0.0.1:{srv.http}/v1/realtime?intent=transcription",
                           max_size=None, proxy=None, ping_interval=None)
        ws.recv(10)
        ws.send(json.dumps({"type": "input_audio_buffer.append",
                            "audio": base64.b64encode(bytes(65536 + 2)).decode()}))
        ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        got = []
        try:
            while not got or got[-1].get("type") != "input_audio_buffer.cleared":
                got.append(json.loads(ws.recv(10)))
        except (ts.ConnectionClosed, TimeoutError) as e:
            got.append({"closed": str(e)})
        ws.close()
        check("a realtime: an append of 65538 decoded bytes (over --max-frame) gets "
              "error audio_too_large, and the session goes on",
              any(m.get("type") == "error" and
                  m.get("error", {}).get("code") == "audio_too_large" for m in got) and
              got[-1].get("type") == "input_audio_buffer.cleared", str(got)[:300])
    finally:
        srv.stop()


def test_b_max_stream_seconds():
    pcm = ts.jfk_pcm()
    srv = ts.Server(["--max-stream-seconds", "3"], name="b")
    try:
        run = ts.ws_stream(srv.http, pcm, {"format": "pcm_s16le", "sample_rate": 16000},
                           32000, frame_s=0.5)
        finals = run.of("final")
        last_end = max((f.get("end", 0) for f in finals), default=0)
        check("b ws: close 1008 'maximum stream duration reached'",
              run.close_code == 1008 and run.close_reason == "maximum stream duration reached",
              f"{run.close_code} {run.close_reason!r}")
        words = textnorm.words(run.final_text())
        check("b ws: the words of the first 3 s, none later",
              "fellow" in words and last_end <= 3.3 and "country" not in words,
              f"{run.final_text()!r} last end {last_end}")
        ts.check_close_handshake("b ws", srv.http, {"format": "pcm_s16le",
                                                    "sample_rate": 16000},
                                 pcm, 32000, 1008)
        lines, state = ts.tcp_stream(srv.tcp, pcm)
        ends = [int(ln.split()[1]) for ln in lines if len(ln.split()) >= 3]
        check("b tcp: lines for the first 3 s, none later, then EOF",
              state["eof"] and ends and max(ends) <= 3300, f"{lines} {state}")
        with open(os.path.join(ts.ARGS.shared, "audio", ts.JFK), "rb") as f:
            st, body = post_form(srv.http, [("file", "jfk.wav", f.read()),
                                            ("model", None, b"whisper-1")])
        err = body.get("error", {})
        check("b rest: an 11 s upload gets 413 file_too_large naming the limit",
              st == 413 and err.get("code") == "file_too_large" and
              "--max-stream-seconds" in err.get("message", ""), f"{st} {body}")
    finally:
        srv.stop()


def test_c_loud_float():
    x = ts.load_wav(os.path.join(ts.ARGS.shared, "audio", ts.JFK))
    # 1 s of silence first, with the bad sample in it: the frame it is in
    # (0.5 s) is refused whole, and nothing is lost but silence.
    f32 = np.concatenate([np.zeros(16000, "<f4"), x.astype("<f4") / 32768.0])
    f32[4000] = -(MAX_SAMPLE + 1.0)
    srv = ts.Server(name="c")
    try:
        run = ts.ws_stream(srv.http, f32.tobytes(),
                           {"format": "pcm_f32le", "sample_rate": 16000}, 64000,
                           frame_s=0.5, sample_bytes=4)
        errs = run.of("error")
        check("c: one error event naming the sample, not 'out of memory'",
              len(errs) == 1 and "1001" in errs[0].get("message", "") and
              "memory" not in errs[0].get("message", ""), str(errs))
        check("c: the stream goes on to the JFK sentence, close 1000",
              run.close_code == 1000 and ts.wer(JFK_REF, run.final_text()) <= 0.1,
              f"{run.close_code} {run.final_text()!r}")
        # SOTTO__GW_TCP_READ: raw TCP is read 32000 bytes at a time; the
        # whole recording in one send (11 s, 352 KB) is taken in pieces,
        # none lost.
        pcm = ts.jfk_pcm()
        lines, state = ts.tcp_stream(srv.tcp, pcm, piece=len(pcm))
        text = " ".join(ln.split(" ", 2)[2] for ln in lines if len(ln.split(" ", 2)) == 3)
        check(f"c tcp: {len(pcm)} bytes in one send (over 32000 a read) give the "
              "JFK sentence, then EOF",
              state["eof"] and ts.wer(JFK_REF, text) <= 0.1, f"{text!r} {state}")
    finally:
        srv.stop()


def test_d_authorization_length():
    srv = ts.Server(["--api-key", KEY], name="d", ready_headers={
        "Authorization": f"Bearer {KEY}"})
    try:
        def status(value):
            return ts.http_get(srv.http, "/v1/models", headers={"Authorization": value})[0]
        readable = MAX_KEY + 256 - 1      # bytes the server copies, less its NUL
        value = f"Bearer {KEY}"
        check("d: the key with trailing spaces, within what is read, is taken",
              status(value + " " * (readable - len(value))) == 200)
        check("d: a header one byte longer than what is read counts as absent: 401",
              status(value + " " * (readable - len(value) + 1)) == 401)

        # SOTTO__GW_MAX_HEADER_DATA: what libwebsockets holds of a request's
        # headers.  A request well within it is served; one past it is
        # dropped without a reply, and the server goes on.
        def raw_request(extra):
            s = socket.create_connection(("127.0.0.1", srv.http), timeout=10)
            try:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " +
                          b"p" * extra + b"\r\n\r\n")
                return s.recv(100)
            except OSError:
                return b""
            finally:
                s.close()
        check("d: a request with 3000 bytes of headers is served",
              raw_request(3000).startswith(b"HTTP/1.1 200"))
        check("d: a request with 5000 bytes of headers (over 4096) is dropped "
              "without a reply", raw_request(5000) == b"")
        check("d: the server serves the next request", status(value) == 200)
    finally:
        srv.stop()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_e_descriptors():
    srv = ts.Server(["--max-streams", "4"], name="e", nofile=64)
    held = []
    try:
        gw = srv.gateway_pid()
        _, fds0, _ = ts.group_usage(srv)
        for port in [srv.http] * 60 + [srv.tcp] * 60:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                held.append(s)
            except OSError:
                pass       # a full backlog may refuse some: that is fine
        time.sleep(1.0)
        c0, t0 = cpu_seconds(gw), time.monotonic()
        time.sleep(3.0)
        busy = (cpu_seconds(gw) - c0) / (time.monotonic() - t0)
        check("e: with 120 connections held the gateway does not spin "
              f"({busy * 100:.0f} % of a CPU)", busy < 0.5)
        for s in held:
            s.close()
        held = []
        ok = srv.wait_ready(30)
        check("e: once they are gone /ready answers 200", ok)
        check("e: the same gateway process", srv.gateway_pid() == gw,
              f"{gw} -> {srv.gateway_pid()}")
        run = ts.ws_stream(srv.http, ts.jfk_pcm(), {"format": "pcm_s16le",
                                                     "sample_rate": 16000}, 32000)
        check("e: a stream afterwards gets the JFK sentence",
              run.close_code == 1000 and ts.wer(JFK_REF, run.final_text()) <= 0.1,
              f"{run.close_code} {run.final_text()!r}")
        ts.wait_streams_idle(srv, 20)
        # libwebsockets closes some connections a moment after the stream
        # ends; a leak stays, so count again for a while before failing.
        deadline = time.monotonic() + 15
        _, fds1, _ = ts.group_usage(srv)
        while fds1 > fds0 and time.monotonic() < deadline:
            time.sleep(0.5)
            _, fds1, _ = ts.group_usage(srv)
        check(f"e: no descriptor left behind ({fds0} -> {fds1})", fds1 <= fds0)
        check("e: the log says why connections waited or were refused",
              any("file descriptors" in ln for ln in srv.log()),
              "")
        check("e: the log warns when the gateway reaches its descriptor limit, "
              "and notes when it accepts again",
              any("at the file descriptor limit" in ln for ln in srv.log()) and
              any("file descriptors free again" in ln for ln in srv.log()))
    finally:
        for s in held:
            s.close()
        srv.stop()


def ignores_worker_memory(srv):
    return any("--worker-memory is ignored" in ln for ln in srv.log())


def test_f_worker_memory():
    srv = ts.Server(["--worker-memory", "128M"], name="f1", workers=1,
                    wait_ready=False)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                "cannot load the model" in ln or "--worker-memory is ignored" in ln
                for ln in srv.log()):
            time.sleep(0.2)
        if ignores_worker_memory(srv):
            check("f1: a sanitizer build says it ignores --worker-memory", True)
            return
        time.sleep(0.5)
        st, _, body = ts.http_get(srv.http, "/ready", timeout=5)
        check("f1: /ready is 503 and says why", st == 503 and "fatal" in body,
              f"{st} {body[:200]!r}")
        check("f1: the log names --worker-memory",
              any("cannot load the model" in ln and "--worker-memory" in ln
                  for ln in srv.log()))
        run = ts.ws_stream(srv.http, ts.jfk_pcm()[:32000], {"format": "pcm_s16le"},
                           32000, timeout=20)
        check("f1: a stream is refused with 1013", run.close_code == 1013,
              f"{run.close_code} {run.close_reason!r}")
        ts.check_close_handshake("f1", srv.http, {"format": "pcm_s16le"},
                                 ts.jfk_pcm(), 32000, 1013)
        # A client that never answers the close frame is not waited for
        # forever (GW_CLOSE_ACK_TIMEOUT, 5 s).
        ws = ts.RawWS(srv.http)
        try:
            code = ws.stream_until_close({"format": "pcm_s16le"}, ts.jfk_pcm(), 32000)
            end = ws.wait_end(15)
            check("f1: a client that never answers the close frame is dropped "
                  "(within 15 s)", code == 1013 and end == "eof", f"{code} {end}")
        finally:
            ws.close()
    finally:
        srv.stop()

    srv = ts.Server(["--worker-memory", "8G"], name="f2", workers=1)
    try:
        if ignores_worker_memory(srv):
            check("f2: a sanitizer build says it ignores --worker-memory", True)
            return
        import resource
        (pid,) = srv.worker_pids()
        lim = (ts.vm_size_kb(pid) + 1024) * 1024
        resource.prlimit(pid, resource.RLIMIT_AS, (lim, lim))
        run = ts.ws_stream(srv.http, ts.jfk_pcm(), {"format": "pcm_s16le",
                                                     "sample_rate": 16000}, 32000)
        warnings = [e for e in run.events if e.get("type") == "warning"]
        check("f2: the stream still gets the JFK sentence, closed with 1000",
              run.close_code == 1000 and ts.wer(JFK_REF, run.final_text()) <= 0.1,
              f"{run.close_code} {run.close_reason!r} {run.final_text()!r}")
        check("f2: the client got a warning that the stream was replayed",
              len(warnings) >= 1, str(run.events[:6]))
        check("f2: the worker exited with status 75 (out of memory)",
              any("exited with status 75 (out of memory)" in ln for ln in srv.log()))
        check("f2: the worker's log line names the stream and the cause",
              any("out of memory in inference" in ln and "stream=" in ln
                  for ln in srv.log()))
        check("f2: a restarted worker, without the cut limit, is ready again",
              srv.wait_ready(30) and srv.worker_pids() and pid not in srv.worker_pids())
        idle = ts.vm_size_kb(list(srv.worker_pids())[0])
    finally:
        srv.stop()

    # Just above what an idle worker maps: the model loads, no stream fits.
    srv = ts.Server(["--worker-memory", f"{idle + 2048}K"], name="f3", workers=1)
    try:
        run = ts.ws_stream(srv.http, ts.jfk_pcm(), {"format": "pcm_s16le",
                                                     "sample_rate": 16000}, 32000)
        errs = [e for e in run.events if e.get("type") == "error"]
        check("f3: a stream no worker can fit ends with stream_crashes, close 1011",
              run.close_code == 1011 and any(e.get("code") == "stream_crashes"
                                             for e in errs),
              f"{run.close_code} {run.close_reason!r} {errs[:2]}")
        # The gateway ends the stream when the second worker's channel
        # closes; the supervisor logs the death once it has reaped it, a
        # moment later.  Wait for that line, then for a third that must
        # not come.
        def deaths():
            return sum("exited with status 75 (out of memory)" in ln
                       for ln in srv.log())
        deadline = time.monotonic() + 15
        while deaths() < 2 and time.monotonic() < deadline:
            time.sleep(0.25)
        time.sleep(2.0)
        check("f3: after two worker deaths, not more", deaths() == 2,
              f"{deaths()} deaths logged")
        # A REST upload on the same worker: its transcription cannot
        # allocate its state either, but a job fails without killing the
        # worker (the library returns ENOMEM): 500, and no more deaths.
        srv.wait_ready(30)
        jfk = open(os.path.join(ts.ARGS.shared, "audio", ts.JFK), "rb").read()
        st, body = post_form(srv.http, [("file", "jfk.wav", jfk)])
        check("f3 rest: a file no worker has the memory for is 500 server_error",
              st == 500 and body.get("error", {}).get("type") == "server_error" and
              "allocate" in body.get("error", {}).get("message", ""),
              f"{st} {json.dumps(body)[:300]}")
        check("f3 rest: the worker survives it (still two deaths)",
              sum("exited with status 75 (out of memory)" in ln
                  for ln in srv.log()) == 2)
        check("f3: the server still answers /health",
              ts.http_get(srv.http, "/health")[0] == 200)
    finally:
        srv.stop()


def realtime_bad_rate(port):
    from websockets.sync.client import connect
    with connect(f"ws://127.0.0.1:{port}/v1/realtime?intent=transcription",
                 open_timeout=10) as ws:
        first = json.loads(ws.recv(10))
        ws.send(json.dumps({"type": "session.update", "session": {
            "type": "transcription",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 7999}}}}}))
        err = json.loads(ws.recv(10))
        # The session goes on: a valid update is taken.
        ws.send(json.dumps({"type": "session.update", "session": {
            "type": "transcription",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}}}}))
        after = json.loads(ws.recv(10))
    return first, err, after


def wyoming_exchange(port, frames, timeout=20):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(frames)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                return got
            got += d
    except OSError:
        return got
    finally:
        s.close()


def multipart(parts):
    """(body, content type) of a multipart/form-data request."""
    b = "sotto-limits-boundary"
    out = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += (f"--{b}\r\nContent-Disposition: {disp}\r\n"
                + ("Content-Type: audio/wav\r\n" if filename else "") + "\r\n").encode()
        out += data + b"\r\n"
    out += f"--{b}--\r\n".encode()
    return out, f"multipart/form-data; boundary={b}"


def post_form(port, parts):
    import urllib.request
    import urllib.error
    body, ctype = multipart(parts)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/audio/transcriptions",
                                 data=body, method="POST",
                                 headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_g_dialect_limits():
    srv = ts.Server(["--max-streams", "1"], name="g", workers=1)
    try:
        first, err, after = realtime_bad_rate(srv.http)
        check("g realtime: rate 7999 gets error invalid_value naming the field",
              first.get("type") == "session.created" and err.get("type") == "error" and
              err.get("error", {}).get("code") == "invalid_value" and
              "rate" in err.get("error", {}).get("message", ""), json.dumps(err)[:300])
        check("g realtime: the session goes on (a valid update is taken)",
              after.get("type") == "session.updated", json.dumps(after)[:200])
        ts.wait_streams_idle(srv, 20)

        def start(rate, width, channels=1):
            return (json.dumps({"type": "audio-start", "data": {
                "rate": rate, "width": width, "channels": channels}}) + "\n").encode()
        got = wyoming_exchange(srv.wyoming, start(7999, 2))
        check("g wyoming: audio-start at 7999 Hz gets an error event naming the rate",
              b'"error"' in got and b"rate" in got, got[:300])
        got = wyoming_exchange(srv.wyoming, start(16000, 1))
        check("g wyoming: audio-start with width 1 gets an error event naming the width",
              b'"error"' in got and b"width" in got, got[:300])
        chunk = ts.jfk_pcm()[:3200]
        hdr = json.dumps({"type": "audio-chunk", "data": {"rate": 22050, "width": 2,
                                                          "channels": 1},
                          "payload_length": len(chunk)}).encode() + b"\n"
        got = wyoming_exchange(srv.wyoming, start(16000, 2) + hdr + chunk +
                               b'{"type": "audio-stop"}\n')
        check("g wyoming: an audio-chunk in another format than its audio-start gets "
              "an error event", b'"error"' in got and b"differs" in got, got[:400])
        ts.wait_streams_idle(srv, 20)

        jfk = open(os.path.join(ts.ARGS.shared, "audio", ts.JFK), "rb").read()
        st, body = post_form(srv.http, [("model", None, b"tiny.en")])
        check("g rest: a form without a file part is 400 'the request has no file field'",
              st == 400 and "no file field" in body.get("error", {}).get("message", ""),
              f"{st} {body}")
        st, body = post_form(srv.http, [("file", "a.wav", jfk), ("file", "b.wav", jfk)])
        check("g rest: a form with two files is 400 'send one file'",
              st == 400 and body.get("error", {}).get("message") == "send one file" and
              body.get("error", {}).get("param") == "file", f"{st} {body}")
        # A float WAV with a NaN sample: refused as audio, 415.
        samples = np.zeros(16000, dtype="<f4")
        samples[8000] = np.nan
        data = samples.tobytes()
        fmt = struct.pack("<HHIIHH", 3, 1, 16000, 16000 * 4, 4, 32)
        wav = (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE" +
               b"fmt " + struct.pack("<I", len(fmt)) + fmt +
               b"data" + struct.pack("<I", len(data)) + data)
        st, body = post_form(srv.http, [("file", "nan.wav", wav)])
        check("g rest: a float WAV with a NaN sample is 415",
              st == 415 and body.get("error", {}).get("param") == "file" and
              "NaN" in body.get("error", {}).get("message", ""), f"{st} {body}")
        # SOTTO_MAX_AUDIO_SECONDS for an upload: an Ogg/Opus file whose
        # last page claims 4 hours and a second (its granule position) is
        # refused by the worker's decoder as too long: 413.
        ogg = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                                "jfk.opus"), "rb").read()
        pages = ts.ogg_pages(ogg)
        off, hlen, blen = pages[-1]
        prev = struct.unpack_from("<q", ogg, pages[-2][0] + 6)[0]
        b = bytearray(ogg)
        struct.pack_into("<q", b, off + 6, prev + (4 * 3600 + 1) * 48000)
        st, body = post_form(srv.http, [("file", "long.opus",
                                         ts.ogg_fix_crc(b, off, hlen + blen))])
        check("g rest: an Ogg/Opus file claiming over 4 hours is 413 file_too_large",
              st == 413 and body.get("error", {}).get("code") == "file_too_large",
              f"{st} {json.dumps(body)[:300]}")
        # GW_REST_MAX_FIELDS: the form fields but the file share 8192
        # bytes of libwebsockets' parser storage.  "model" is read but not
        # checked (any name is this server's model), so it can fill it: a
        # 6000-byte one is taken, a 9000-byte one makes the body malformed.
        st, body = post_form(srv.http, [("model", None, b"m" * 6000),
                                        ("file", "jfk.wav", jfk)])
        check("g rest: a 6000-byte model field is taken (200, the JFK text)",
              st == 200 and ts.wer(JFK_REF, body.get("text", "")) <= 0.1,
              f"{st} {json.dumps(body)[:200]}")
        st, body = post_form(srv.http, [("model", None, b"m" * 9000),
                                        ("file", "jfk.wav", jfk)])
        check("g rest: a 9000-byte model field (over 8192) is 400, malformed form",
              st == 400 and "malformed" in body.get("error", {}).get("message", ""),
              f"{st} {json.dumps(body)[:300]}")
        ts.wait_streams_idle(srv, 20)

        # At capacity (one stream held), a WhisperLive client that never
        # sends its first message is dropped without a WAIT.
        from websockets.sync.client import connect
        from websockets.exceptions import ConnectionClosed
        hold = connect(f"ws://127.0.0.1:{srv.http}/v1/stream", open_timeout=10)
        hold.recv(10)
        got, closed = [], False
        try:
            with connect(f"ws://127.0.0.1:{srv.whisperlive}/", open_timeout=10) as wl:
                t = time.monotonic()
                while time.monotonic() - t < 15:
                    got.append(wl.recv(15))
        except (ConnectionClosed, TimeoutError) as e:
            closed = isinstance(e, ConnectionClosed)
        hold.close()
        check("g whisperlive: a refused client that sends nothing is dropped, no WAIT",
              closed and not any("WAIT" in str(m) for m in got), f"{closed} {got[:2]}")
    finally:
        srv.stop()


def test_h_drain_deadline():
    srv = ts.Server(["--drain-timeout", "1", "--heartbeat-timeout", "120",
                     "--inference-timeout", "120"], name="h", workers=1)
    stopped = None
    try:
        from websockets.sync.client import connect
        from websockets.exceptions import ConnectionClosed
        ws = connect(f"ws://127.0.0.1:{srv.http}/v1/stream", open_timeout=10)
        ws.recv(10)
        ws.send(ts.jfk_pcm()[:64000])
        time.sleep(1.0)
        (stopped,) = srv.worker_pids()
        os.kill(stopped, signal.SIGSTOP)
        ws.send(ts.jfk_pcm()[64000:160000])
        time.sleep(0.5)
        os.kill(srv.pid, signal.SIGTERM)
        code = None
        try:
            while True:
                ws.recv(15)
        except ConnectionClosed:
            code = ws.close_code
        except TimeoutError:
            pass
        check("h: the stream that cannot flush is closed with 1001 after the deadline",
              code == 1001, str(code))
        t = time.monotonic()
        while time.monotonic() - t < 5 and not any("drain deadline passed" in ln
                                                   for ln in srv.log()):
            time.sleep(0.1)
        check("h: the log says the drain deadline passed",
              any("drain deadline passed" in ln for ln in srv.log()))
    finally:
        if stopped is not None:
            try:
                os.kill(stopped, signal.SIGCONT)
            except OSError:
                pass
        srv.stop()


WORKER_MAX_STREAMS = 256   # SOTTO__WORKER_MAX_STREAMS, src/server/worker.h


def test_i_worker_streams():
    from websockets.sync.client import connect
    from websockets.exceptions import ConnectionClosed
    srv = ts.Server(["--max-streams", str(WORKER_MAX_STREAMS + 1),
                     "--idle-timeout", "300"], name="i", workers=1)
    held = []
    try:
        cfg = json.dumps({"format": "pcm_s16le", "sample_rate": 16000})
        for _ in range(WORKER_MAX_STREAMS):
            ws = connect(f"ws://127.0.0.1:{srv.http}/v1/stream", open_timeout=10)
            ws.recv(10)
            ws.send(cfg)
            ws.send(bytes(3200))    # a stream is placed on a worker with its audio
            held.append(ws)
        # The OPENs reach the worker in order over its one channel, so the
        # 257th comes after the 256 others.
        over = connect(f"ws://127.0.0.1:{srv.http}/v1/stream", open_timeout=10)
        over.recv(10)
        over.send(cfg)
        over.send(bytes(3200))
        evs, code = [], None
        try:
            while True:
                evs.append(json.loads(over.recv(20)))
        except ConnectionClosed:
            code = over.close_code
        except TimeoutError:
            pass
        errs = [e for e in evs if e.get("type") == "error"]
        check("i: the 257th stream on one worker gets an error naming the limit",
              any("too many streams on this worker (limit 256)" in e.get("message", "")
                  for e in errs), str(evs[:3]))
        check("i: then close 1000", code == 1000, str(code))
        # The held streams are alive: one of them streams the sentence.
        ws = held.pop()
        pcm = ts.jfk_pcm()
        for at in range(0, len(pcm), 32000):
            ws.send(pcm[at:at + 32000])
        ws.send(json.dumps({"type": "finish"}))
        text = []
        try:
            while True:
                e = json.loads(ws.recv(120))
                if e.get("type") == "final":
                    text.append(e.get("text", ""))
        except (ConnectionClosed, TimeoutError):
            pass
        got = " ".join(text)
        check("i: a stream among the 256 still gets the JFK sentence",
              ts.wer(JFK_REF, got) <= 0.1, got)
    finally:
        for ws in held:
            try:
                ws.close()
            except Exception:  # noqa: BLE001
                pass
        srv.stop()


def test_j_no_worker():
    """A stream waiting for a worker when none can run any more: its worker
    is killed, and the model folder is gone by the time its successor
    loads, so every worker has exited 78 (fatal)."""
    tmp = tempfile.mkdtemp(prefix="sotto-limits-model-")
    link = os.path.join(tmp, "model")
    os.symlink(os.path.abspath(ts.ARGS.model), link)
    srv = ts.Server(["--restart-backoff-min", "0.5"], model=link, name="j", workers=1)
    try:
        run = ts.WSRun(srv.http)
        run.send(json.dumps({"format": "pcm_s16le", "sample_rate": 16000}))
        run.send(ts.jfk_pcm()[:32000])
        # Its first partial says it is on the worker.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not run.of("partial"):
            time.sleep(0.1)
        os.unlink(link)
        for pid in srv.worker_pids():
            os.kill(pid, signal.SIGKILL)
        ended = run.wait(30)
        errs = run.of("error")
        check("j: the waiting stream gets error no_worker, then close 1013",
              ended and run.close_code == 1013 and
              any(e.get("code") == "no_worker" for e in errs),
              f"ended {ended}, {run.close_code} {run.close_reason!r}, {errs[:2]}")
        check("j: the log says why it was ended",
              any("no worker can take the stream" in ln for ln in srv.log()))
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_k_job_crashes():
    """SOTTO__GW_MAX_STREAM_CRASHES for REST jobs: every worker crashes in
    its first inference (SOTTO_FAULT=crash-after:1, test builds only), so
    a job dies with its worker twice and is then refused."""
    srv = ts.Server(["--crash-loop-deaths", "20"], env={"SOTTO_FAULT": "crash-after:1"},
                    name="k", workers=1)
    try:
        if not any("fault injection" in ln for ln in srv.log()):
            note("k skipped: this build has no fault injection (-DSOTTO_FAULT_INJECTION)")
            return
        jfk = open(os.path.join(ts.ARGS.shared, "audio", ts.JFK), "rb").read()
        st, body = post_form(srv.http, [("file", "jfk.wav", jfk)])
        check("k rest: a file whose worker dies twice in it is 500 engine_crash",
              st == 500 and body.get("error", {}).get("code") == "engine_crash",
              f"{st} {json.dumps(body)[:300]}")
        # The gateway answers once the channel closes; the supervisor logs
        # the death when it reaps the worker, a moment later.
        def deaths():
            return sum("was killed by signal 11 (SIGSEGV)" in ln for ln in srv.log())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and deaths() < 2:
            time.sleep(0.1)
        srv.wait_ready(30)
        check("k rest: after exactly two worker deaths (SIGSEGV)", deaths() == 2,
              str([ln for ln in srv.log() if "SIGSEGV" in ln][:6]))
        check("k: the server still answers /health", ts.http_get(srv.http, "/health")[0] == 200)
    finally:
        srv.stop()


TESTS = [("a", test_a_text_messages), ("b", test_b_max_stream_seconds),
         ("c", test_c_loud_float), ("d", test_d_authorization_length),
         ("e", test_e_descriptors), ("f", test_f_worker_memory),
         ("g", test_g_dialect_limits), ("h", test_h_drain_deadline),
         ("i", test_i_worker_streams), ("j", test_j_no_worker),
         ("k", test_k_job_crashes)]


def main():
    ts.parse_args(__doc__)
    if IMPORT_ERROR:
        print(f"test_limits: {IMPORT_ERROR}", file=sys.stderr)
        return 2
    path = os.path.join(ts.ARGS.shared, "audio", ts.JFK)
    ts.AUDIO[ts.JFK] = (ts.load_wav(path), JFK_REF)
    ts.set_subreaper()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    return ts.run_tests(TESTS, ts.ARGS.only, "test_limits")


if __name__ == "__main__":
    sys.exit(main())
