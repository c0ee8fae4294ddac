#!/usr/bin/env python3
"""End-to-end tests of the other servers' protocols `sotto serve` speaks,
each driven by that protocol's own client where one can be installed.

Usage:
    test_dialects.py --sotto build/sotto --model DIR --shared ../shared
                     [--quick] [--only a,b,...] [--verbose] [--server-log]

The server is started, watched and stopped by test_serve.py's Server class
(real processes on ephemeral loopback ports, the real model).

Tests:
  a  vosk-server, with a client written like vosk-server's example client
     (websockets, lock-step: one reply read after every message sent): on
     the vosk port and on /vosk; exactly one reply per chunk, results with
     conf/start/end/word, the final result after {"eof" : 1}, the sentence;
     "words": false; {"reset" : 1} in a pause answered with the result of
     the utterance it ended; a bad message still gets its one reply
  b  WhisperLive, with whisper-live's own StreamingTranscriptionClient
     (pip whisper-live, without its GPU dependencies) on the WhisperLive
     port: SERVER_READY, completed segments, the whole sentence including
     the last segment (which WhisperLive itself does not flush); with a
     websockets client on /whisperlive: float32 audio, the segments' shape
     (times as strings with 3 decimals, completed, words), END_OF_AUDIO as
     text; options refused (translate, bad audio_format) with status ERROR
  c  OpenAI Realtime transcription, with the official openai package's
     realtime client pointed at the server (base_url): session.created,
     session.update, 24 kHz pcm16 appended in base64; speech_started,
     speech_stopped, committed, deltas whose concatenation is the
     completed transcript, the sentence; turn_detection null: the client's
     commit ends the item; an empty commit and an unknown event get error
     events and the session goes on
  d  uniform behaviour: with --max-streams 1 and the slot taken, each
     dialect says "busy" its own way (vosk: close 1013; WhisperLive: status
     WAIT echoing the uid; Realtime: an error event server_busy, then
     1013; Wyoming: an error event; REST: 503, in g); /metrics counts
     each protocol; SIGTERM drains a vosk stream with its final result,
     then close 1001
  e  a worker SIGKILLed mid-sentence under a vosk and a WhisperLive client:
     vosk still gets one reply per chunk, WhisperLive a WARNING status,
     and both the whole sentence (the replay works for every dialect)
  f  Wyoming (Home Assistant), with the wyoming package's AsyncTcpClient:
     describe answered with info (parsed by the package's Info), a
     transcription at 16 and 48 kHz with transcript-start, -chunk, -stop
     and transcript, the chunks adding up to the transcript; stereo, an
     oversized payload and a header that is not JSON get an error event,
     and the server goes on
  g  OpenAI REST, with the openai package: POST /v1/audio/transcriptions
     as text (equal to `sotto transcribe`'s), json, verbose_json with
     words, srt, vtt and streamed (SSE deltas then done); GET /v1/models;
     400 for an empty file or a bad field, 415 for undecodable audio, 413
     over --max-upload, 503 with Retry-After at capacity; a 67 s recording
     split across the two free workers, its WER within 2 points of the
     whole file's; every worker killed mid-file: the jobs run again and
     the streamed text has each segment once

  h  SIGTERM with a stream of every streaming dialect open (vosk,
     WhisperLive, Realtime, Wyoming; 4 s of jfk.wav sent) and a REST
     upload in flight: vosk gets its final result and close 1001,
     WhisperLive its segments and 1001, Realtime its completed transcript
     and 1001, Wyoming its transcript before the connection ends, the
     upload its 200 with the sentence; a new upload while draining gets
     503 server_shutting_down; the server exits 0

Every line of output is "ok NAME" or "FAIL NAME: why", then a summary.
Exit status: 0 all checks passed, 1 a check failed, 2 usage/setup error.
"""
import asyncio
import base64
import json
import os
import shutil
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
sys.path.insert(0, HERE)
import test_serve as ts  # noqa: E402
from test_serve import check, note, textnorm  # noqa: E402

IMPORT_ERROR = ts.IMPORT_ERROR
try:
    import numpy as np
    import websockets
    from websockets.sync.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed
except ImportError as e:  # pragma: no cover
    IMPORT_ERROR = IMPORT_ERROR or f"{e} (pip install websockets numpy)"

JFK_REF = ("And so my fellow Americans, ask not what your country can do for "
           "you, ask what you can do for your country.")
MAX_WER = 0.10      # as the native protocol's tests allow on this sentence


jfk_pcm = ts.jfk_pcm


def wer_ok(name, text):
    w = ts.wer(JFK_REF, text)
    return check(f"{name} (WER {w:.3f})", w <= MAX_WER, repr(text))


# ---- a: vosk ----------------------------------------------------------------

async def vosk_session(uri, pcm, rate=16000, words=None, chunk_s=0.2, reset_at=None,
                       garbage=False):
    """The shape of vosk-server's example client: config, then for each
    chunk send and read one reply, then eof and read the final result.
    Returns (replies, final, close code)."""
    replies = []
    async with websockets.connect(uri) as ws:
        cfg = {"sample_rate": rate}
        if words is not None:
            cfg["words"] = words
        # vosk's own clients send this spacing; any JSON spelling works.
        await ws.send('{ "config" : %s }' % json.dumps(cfg))
        step = int(rate * chunk_s) * 2
        for i, at in enumerate(range(0, len(pcm), step)):
            await ws.send(pcm[at:at + step])
            replies.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
            if reset_at is not None and i == reset_at:
                await ws.send('{"reset" : 1}')
                replies.append(("reset", json.loads(await asyncio.wait_for(ws.recv(), 60))))
            if garbage and i == 3:
                await ws.send("this is not json")
                replies.append(("garbage", json.loads(await asyncio.wait_for(ws.recv(), 60))))
        await ws.send('{"eof" : 1}')
        final = json.loads(await asyncio.wait_for(ws.recv(), 60))
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed:
            pass
        return replies, final, ws.close_code


def vosk_text(replies, final):
    """The results' texts, in the order they came."""
    parts = []
    for r in replies:
        r = r[1] if isinstance(r, tuple) else r
        if r.get("text"):
            parts.append(r["text"])
    if final.get("text"):
        parts.append(final["text"])
    return " ".join(parts)


def test_a_vosk():
    pcm = jfk_pcm()
    n_chunks = (len(pcm) + 6399) // 6400
    with_srv = ts.Server(name="vosk", workers=1)
    try:
        for label, uri in (("port", f"ws://127.0.0.1:{with_srv.vosk}"),
                           ("path", f"ws://127.0.0.1:{with_srv.http}/vosk")):
            replies, final, code = asyncio.run(vosk_session(uri, pcm))
            check(f"a vosk {label}: one reply per chunk ({n_chunks})",
                  len(replies) == n_chunks and
                  all("partial" in r or "text" in r for r in replies), f"{len(replies)}")
            results = [r for r in replies if "result" in r] + ([final] if "result" in final else [])
            ws = [w for r in results for w in r["result"]]
            check(f"a vosk {label}: results carry conf/start/end/word in time order",
                  ws and all(set(w) == {"conf", "start", "end", "word"} and
                             w["start"] <= w["end"] for w in ws) and
                  all(a["end"] <= b["start"] + 0.05 for a, b in zip(ws, ws[1:])),
                  json.dumps(ws[:3]))
            check(f"a vosk {label}: the server closes after the final result",
                  code == 1000, f"close code {code}")
            wer_ok(f"a vosk {label}: the sentence", vosk_text(replies, final))
        uri = f"ws://127.0.0.1:{with_srv.vosk}"
        replies, final, _ = asyncio.run(vosk_session(uri, pcm, words=False))
        check("a vosk words false: results without a word list",
              all("result" not in r for r in replies + [final]) and final.get("text"),
              json.dumps(final))
        # A reset in the pause after "Americans" (2.4 s; the VAD would end
        # the utterance at 2.57 s) ends that utterance there.
        replies, final, _ = asyncio.run(vosk_session(uri, pcm, reset_at=11, garbage=True))
        resets = [r[1] for r in replies if isinstance(r, tuple) and r[0] == "reset"]
        check("a vosk reset: answered with the result so far",
              len(resets) == 1 and "result" in resets[0] and
              textnorm.words(resets[0]["text"]) == textnorm.words("And so my fellow Americans"),
              json.dumps(resets))
        bad = [r[1] for r in replies if isinstance(r, tuple) and r[0] == "garbage"]
        check("a vosk bad message: one reply, with an error, and the stream goes on",
              len(bad) == 1 and "error" in bad[0], json.dumps(bad))
        wer_ok("a vosk reset: the sentence, nothing lost at the reset",
               vosk_text(replies, final))
    finally:
        with_srv.stop()


# ---- b: WhisperLive -----------------------------------------------------------

def test_b_whisperlive():
    try:
        from whisper_live.client import StreamingTranscriptionClient
    except ImportError as e:
        check("b whisper-live's client is installed (pip install whisper-live --no-deps "
              "websocket-client av scipy PyAudio)", False, str(e))
        return
    pcm = jfk_pcm()
    srv = ts.Server(name="whisperlive", workers=1)
    try:
        committed, ready = [], threading.Event()
        c = StreamingTranscriptionClient(
            "127.0.0.1", srv.whisperlive, lang="en", model="tiny.en", use_vad=True,
            on_session_started=ready.set,
            on_committed_transcript=lambda text, segs: committed.append(text))
        with c:
            check("b whisperlive client: SERVER_READY", ready.wait(10))
            for at in range(0, len(pcm), 8192):
                c.send(pcm[at:at + 8192], pcm_format="int16")
        text = " ".join(s["text"].strip() for s in c.transcript)
        check("b whisperlive client: completed segments in order",
              len(c.transcript) >= 2 and
              all(float(a["end"]) <= float(b["start"]) for a, b in
                  zip(c.transcript, c.transcript[1:])), json.dumps(c.transcript)[:300])
        wer_ok("b whisperlive client: the sentence, the last segment flushed", text)
        check("b whisperlive client: it ends with 'country'",
              textnorm.words(text)[-1:] == ["country"], text)

        # websockets on /whisperlive: float32, END_OF_AUDIO as text, words.
        f32 = (np.frombuffer(pcm, dtype="<i2").astype("<f4") / 32768.0).tobytes()
        msgs = []
        with ws_connect(f"ws://127.0.0.1:{srv.http}/whisperlive") as ws:
            ws.send(json.dumps({"uid": "u-1", "language": "en", "task": "transcribe",
                                "model": "tiny.en", "use_vad": True,
                                "word_timestamps": True}))
            first = json.loads(ws.recv(10))
            check("b whisperlive path: SERVER_READY with the uid",
                  first == {"uid": "u-1", "message": "SERVER_READY",
                            "backend": "faster_whisper"}, json.dumps(first))
            for at in range(0, len(f32), 16000):
                ws.send(f32[at:at + 16000])
            ws.send("END_OF_AUDIO")
            try:
                while True:
                    msgs.append(json.loads(ws.recv(60)))
            except ConnectionClosed:
                pass
            code = ws.close_code
        segs = msgs[-1].get("segments", []) if msgs else []
        check("b whisperlive path: segments with string times and words",
              segs and all(isinstance(s["start"], str) and len(s["start"].split(".")[1]) == 3
                           and isinstance(s["completed"], bool) for s in segs) and
              all(s["completed"] for s in segs) and "words" in segs[0] and
              all(m.get("uid") == "u-1" for m in msgs), json.dumps(segs)[:300])
        wer_ok("b whisperlive path: the sentence (float32)",
               " ".join(s["text"] for s in segs))
        check("b whisperlive path: closed with 1000 after END_OF_AUDIO", code == 1000,
              f"{code}")

        for opts, word in (({"uid": "u-2", "task": "translate"}, "translate"),
                           ({"uid": "u-3", "audio_format": "uint8"}, "audio_format")):
            with ws_connect(f"ws://127.0.0.1:{srv.http}/whisperlive") as ws:
                ws.send(json.dumps(opts))
                m = json.loads(ws.recv(10))
                try:
                    ws.recv(10)
                except ConnectionClosed:
                    pass
            check(f"b whisperlive options refused: {word}",
                  m.get("status") == "ERROR" and word in m.get("message", "") and
                  m.get("uid") == opts["uid"], json.dumps(m))
    finally:
        srv.stop()


# ---- c: OpenAI Realtime ----------------------------------------------------------

def pcm24(pcm):
    """16 kHz s16 to 24 kHz s16 (test_serve's resampler)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    y = ts.resample(x, 16000, 24000)
    return np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()


def rt_collect(conn, until, timeout=60):
    evs = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev = conn.recv()
        evs.append(ev)
        if until(evs):
            break
    return evs


def test_c_realtime():
    try:
        import openai
    except ImportError as e:
        check("c the openai package is installed (pip install openai)", False, str(e))
        return
    pcm = pcm24(jfk_pcm())
    silence = bytes(24000 * 2)
    srv = ts.Server(name="realtime", workers=1)
    try:
        client = openai.OpenAI(api_key="unused", base_url=f"http://127.0.0.1:{srv.http}/v1")
        with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
            ev = conn.recv()
            check("c realtime: session.created first", ev.type == "session.created", ev.type)
            conn.session.update(session={
                "type": "transcription",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                    "transcription": {"model": "tiny.en", "language": "en"},
                                    "turn_detection": {"type": "server_vad"}}}})
            ev = conn.recv()
            check("c realtime: session.updated", ev.type == "session.updated", ev.type)
            for at in range(0, len(pcm), 4800):
                conn.input_audio_buffer.append(
                    audio=base64.b64encode(pcm[at:at + 4800]).decode())
            conn.input_audio_buffer.append(audio=base64.b64encode(silence).decode())
            evs = rt_collect(conn, lambda e: sum(x.type.endswith(".completed") for x in e) >= 3
                             and e[-1].type.endswith(".completed")
                             and "country" in (e[-1].transcript or "").lower())
        types = [e.type for e in evs]
        done = [e for e in evs if e.type.endswith("transcription.completed")]
        for e in done:
            deltas = "".join(x.delta for x in evs if x.type.endswith("transcription.delta")
                             and x.item_id == e.item_id)
            if deltas != e.transcript:
                check("c realtime: deltas add up to the completed transcript", False,
                      f"{deltas!r} != {e.transcript!r}")
                break
        else:
            check("c realtime: deltas add up to the completed transcript", bool(done))
        order_ok = all(types.index(t) < types.index(u) for t, u in (
            ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"),
            ("input_audio_buffer.speech_stopped", "input_audio_buffer.committed"),
            ("input_audio_buffer.committed",
             "conversation.item.input_audio_transcription.completed"))
            if t in types and u in types)
        check("c realtime: speech_started, speech_stopped, committed, completed in order",
              order_ok and "input_audio_buffer.speech_started" in types and
              "input_audio_buffer.committed" in types, " ".join(types)[:400])
        wer_ok("c realtime server_vad: the sentence", " ".join(e.transcript for e in done))

        # turn_detection null: the client's commit ends the one item.
        with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
            conn.recv()
            conn.send({"type": "transcription_session.update",
                       "session": {"input_audio_format": "pcm16", "turn_detection": None,
                                   "input_audio_transcription": {"language": "en"}}})
            ev = conn.recv()
            check("c realtime legacy update: transcription_session.updated",
                  ev.type == "transcription_session.updated", ev.type)
            conn.input_audio_buffer.commit()
            ev = conn.recv()
            check("c realtime: an empty commit gets an error, the session goes on",
                  ev.type == "error" and ev.error.code == "input_audio_buffer_commit_empty",
                  str(ev)[:200])
            conn.send({"type": "response.create"})
            ev = conn.recv()
            check("c realtime: an unknown event gets an error",
                  ev.type == "error" and ev.error.code == "unknown_event", str(ev)[:200])
            for at in range(0, len(pcm), 48000):
                conn.input_audio_buffer.append(
                    audio=base64.b64encode(pcm[at:at + 48000]).decode())
            conn.input_audio_buffer.commit()
            evs = rt_collect(conn, lambda e: e[-1].type.endswith("transcription.completed"))
        types = [e.type for e in evs]
        done = [e for e in evs if e.type.endswith("transcription.completed")]
        check("c realtime manual: committed, then one completed item, no VAD events",
              types[0] == "input_audio_buffer.committed" and len(done) == 1 and
              "input_audio_buffer.speech_started" not in types, " ".join(types))
        wer_ok("c realtime manual: the sentence", done[0].transcript if done else "")
    finally:
        srv.stop()


# ---- d: uniform behaviour ---------------------------------------------------------

def test_d_uniform():
    pcm = jfk_pcm()
    srv = ts.Server(name="uniform", workers=1, extra=["--max-streams", "1"])
    try:
        hold = ws_connect(f"ws://127.0.0.1:{srv.http}/v1/stream")
        hold.recv(10)
        hold.send(pcm[:32000])
        # vosk: 1013.
        try:
            with ws_connect(f"ws://127.0.0.1:{srv.vosk}") as ws:
                ws.send(pcm[:3200])
                ws.recv(10)
            code = None
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
        check("d busy vosk: close 1013", code == 1013, f"{code}")
        # WhisperLive: WAIT with the uid.
        with ws_connect(f"ws://127.0.0.1:{srv.whisperlive}") as ws:
            ws.send(json.dumps({"uid": "busy-1"}))
            m = json.loads(ws.recv(10))
            try:
                ws.recv(10)
            except ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
        check("d busy whisperlive: status WAIT with the uid, then 1013",
              m.get("status") == "WAIT" and m.get("uid") == "busy-1" and code == 1013,
              f"{m} {code}")
        # Realtime: an error event, then 1013.
        with ws_connect(f"ws://127.0.0.1:{srv.http}/v1/realtime?intent=transcription") as ws:
            m = json.loads(ws.recv(10))
            try:
                ws.recv(10)
            except ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
        check("d busy realtime: error server_busy, then 1013",
              m.get("type") == "error" and m["error"]["code"] == "server_busy" and
              code == 1013, f"{m} {code}")
        # Wyoming: an error event, then the close.
        async def wy_busy():
            r, w = await asyncio.open_connection("127.0.0.1", srv.wyoming)
            data = await asyncio.wait_for(r.read(), 10)
            w.close()
            return data
        got = asyncio.run(wy_busy())
        check("d busy wyoming: an error event server_busy, then the close",
              got.startswith(b'{"type":"error"') and b"server_busy" in got, got[:200])
        hold.close()
        ts.wait_streams_idle(srv, 20)
        mt = srv.metrics()
        check("d metrics: refusals counted by protocol",
              all(mt.get(f'sotto_protocol_rejected_total{{protocol="{p}"}}', 0) >= 1
                  for p in ("vosk", "whisperlive", "realtime", "wyoming")), json.dumps(
                      {k: v for k, v in mt.items() if "protocol" in k}))

        # SIGTERM while a vosk client streams: its final result, then 1001.
        out = {}

        async def vosk_drain():
            async with websockets.connect(f"ws://127.0.0.1:{srv.vosk}") as ws:
                for at in range(0, len(pcm), 6400):
                    await ws.send(pcm[at:at + 6400])
                    r = json.loads(await ws.recv())
                    out.setdefault("replies", []).append(r)
                    if at == 6400 * 40:         # 8 s in: "...can do for you"
                        srv.p.send_signal(signal.SIGTERM)
                        break
                try:
                    while True:
                        out.setdefault("after", []).append(json.loads(await ws.recv()))
                except websockets.ConnectionClosed as e:
                    out["code"] = e.rcvd.code if e.rcvd else None
        asyncio.run(vosk_drain())
        after = out.get("after", [])
        text = " ".join(r.get("text", "") for r in out.get("replies", []) + after)
        check("d drain vosk: the final result, then close 1001",
              out.get("code") == 1001 and any("result" in r for r in after) and
              "country" in text.lower(), json.dumps(out)[:400])
        mt = {}
    finally:
        srv.stop()


# ---- e: a worker killed under a dialect -------------------------------------------

def kill_workers(srv):
    for pid in srv.worker_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_e_worker_kill():
    pcm = jfk_pcm()
    srv = ts.Server(name="kill", workers=1)
    try:
        # vosk: the worker dies 5 s into the sentence; the replies go on
        # (one per chunk) and the results hold the whole sentence.
        async def vosk_kill():
            replies = []
            async with websockets.connect(f"ws://127.0.0.1:{srv.vosk}") as ws:
                for i, at in enumerate(range(0, len(pcm), 6400)):
                    await ws.send(pcm[at:at + 6400])
                    replies.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
                    if i == 25:
                        kill_workers(srv)
                await ws.send('{"eof" : 1}')
                final = json.loads(await asyncio.wait_for(ws.recv(), 60))
            return replies, final
        replies, final = asyncio.run(vosk_kill())
        check("e vosk: one reply per chunk across the worker's death",
              len(replies) == (len(pcm) + 6399) // 6400, f"{len(replies)}")
        wer_ok("e vosk: the sentence after a worker SIGKILL", vosk_text(replies, final))
        check("e vosk: the stream was replayed",
              srv.metrics().get("sotto_stream_recoveries_total", 0) >= 1)

        # WhisperLive: a WARNING status, then the whole sentence.
        msgs = []
        with ws_connect(f"ws://127.0.0.1:{srv.whisperlive}") as ws:
            ws.send(json.dumps({"uid": "k", "audio_format": "int16"}))
            ws.recv(10)
            for i, at in enumerate(range(0, len(pcm), 6400)):
                ws.send(pcm[at:at + 6400])
                if i == 25:
                    kill_workers(srv)
                time.sleep(0.02)
            ws.send(b"END_OF_AUDIO")
            try:
                while True:
                    msgs.append(json.loads(ws.recv(60)))
            except ConnectionClosed:
                pass
        warn = [m for m in msgs if m.get("status") == "WARNING"]
        segs = [m for m in msgs if "segments" in m]
        check("e whisperlive: a WARNING status names the restart",
              warn and "replaying" in warn[0]["message"], json.dumps(warn)[:200])
        wer_ok("e whisperlive: the sentence after a worker SIGKILL",
               " ".join(x["text"] for x in segs[-1]["segments"]) if segs else "")
    finally:
        srv.stop()


# ---- f: Wyoming ---------------------------------------------------------------------

async def wyoming_transcribe(port, pcm, rate=16000, chunk=2048, language="en"):
    """What Home Assistant does: transcribe, audio-start, chunks,
    audio-stop; read until transcript.  Returns the events read."""
    from wyoming.asr import Transcribe
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient
    events = []
    async with AsyncTcpClient("127.0.0.1", port, connect_timeout=10, read_timeout=60) as c:
        await c.write_event(Transcribe(language=language).event())
        await c.write_event(AudioStart(rate=rate, width=2, channels=1).event())
        for at in range(0, len(pcm), chunk):
            await c.write_event(AudioChunk(rate=rate, width=2, channels=1,
                                           audio=pcm[at:at + chunk]).event())
        await c.write_event(AudioStop().event())
        while True:
            ev = await c.read_event()
            if ev is None:
                break
            events.append(ev)
            if ev.type == "transcript":
                break
    return events


def test_f_wyoming():
    try:
        from wyoming.asr import Transcript, TranscriptChunk
        from wyoming.client import AsyncTcpClient
        from wyoming.info import Describe, Info
    except ImportError as e:
        check("f the wyoming package is installed (pip install wyoming)", False, str(e))
        return
    pcm = jfk_pcm()
    srv = ts.Server(name="wyoming", workers=1)
    try:
        async def describe():
            async with AsyncTcpClient("127.0.0.1", srv.wyoming, connect_timeout=10,
                                      read_timeout=10) as c:
                await c.write_event(Describe().event())
                return await c.read_event()
        ev = asyncio.run(describe())
        info = Info.from_event(ev) if ev is not None and Info.is_type(ev.type) else None
        check("f wyoming describe: info lists the ASR program and its model",
              info is not None and info.asr and info.asr[0].name == "sotto" and
              info.asr[0].models and info.asr[0].models[0].name and
              "en" in info.asr[0].models[0].languages and
              info.asr[0].supports_transcript_streaming, str(info)[:300])

        events = asyncio.run(wyoming_transcribe(srv.wyoming, pcm))
        types = [e.type for e in events]
        final = Transcript.from_event(events[-1]) if types and types[-1] == "transcript" \
            else None
        chunks = "".join(TranscriptChunk.from_event(e).text for e in events
                         if e.type == "transcript-chunk")
        check("f wyoming: transcript-start, chunks, transcript-stop, then transcript",
              types and types[0] == "transcript-start" and "transcript-chunk" in types and
              types[-2:] == ["transcript-stop", "transcript"], " ".join(types))
        check("f wyoming: the chunks add up to the transcript",
              final is not None and chunks == final.text, f"{chunks!r} / {final}")
        wer_ok("f wyoming: the sentence", final.text if final else "")

        # 48 kHz, as a satellite may send it.
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        pcm48 = np.clip(np.round(ts.resample(x, 16000, 48000)), -32768,
                        32767).astype("<i2").tobytes()
        events = asyncio.run(wyoming_transcribe(srv.wyoming, pcm48, rate=48000, chunk=6144))
        wer_ok("f wyoming 48 kHz: the sentence",
               events[-1].data.get("text", "") if events else "")

        # Stereo is refused with an error event; broken framing too.
        async def bad(frames):
            r, w = await asyncio.open_connection("127.0.0.1", srv.wyoming)
            w.write(frames)
            await w.drain()
            data = await asyncio.wait_for(r.read(), 20)
            w.close()
            return data
        got = asyncio.run(bad(b'{"type": "audio-start", "data": {"rate": 16000, '
                              b'"width": 2, "channels": 2}}\n'))
        check("f wyoming stereo: an error event names it",
              b'"error"' in got and b"mono" in got, got[:300])
        got = asyncio.run(bad(b'{"type": "audio-chunk", "payload_length": 99999999}\n'))
        check("f wyoming: a payload over --max-frame ends with an error event",
              b'"error"' in got and b"payload_length" in got, got[:300])
        got = asyncio.run(bad(b"not json at all\n"))
        check("f wyoming: a header that is not JSON ends with an error event",
              b'"error"' in got, got[:300])
        events = asyncio.run(wyoming_transcribe(srv.wyoming, pcm))
        wer_ok("f wyoming: the server goes on after bad clients",
               events[-1].data.get("text", "") if events else "")
        mt = srv.metrics()
        check("f wyoming: counted in /metrics",
              mt.get('sotto_protocol_streams_total{protocol="wyoming"}', 0) >= 4,
              json.dumps({k: v for k, v in mt.items() if "wyoming" in k}))
    finally:
        srv.stop()


# ---- g: OpenAI REST --------------------------------------------------------------

def write_wav(path, pcm, rate=16000):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def cli_text(path):
    """`sotto transcribe`'s text of a file (its json format)."""
    p = subprocess.run([ts.ARGS.sotto, "transcribe", "--model", ts.ARGS.model, "-f", "json",
                        path], capture_output=True, timeout=600)
    return json.loads(p.stdout)["text"].strip() if p.returncode == 0 else None


def test_g_openai_rest():
    try:
        import openai
    except ImportError as e:
        check("g the openai package is installed (pip install openai)", False, str(e))
        return
    jfk = os.path.join(ts.ARGS.shared, "audio", ts.JFK)
    tmp = tempfile.mkdtemp(prefix="sotto-rest-")
    srv = ts.Server(name="rest", workers=2,
                    extra=["--max-upload", "4M", "--max-streams", "3"])
    try:
        c = openai.OpenAI(api_key="unused", base_url=f"http://127.0.0.1:{srv.http}/v1",
                          max_retries=0, timeout=600)
        want = cli_text(jfk)
        with open(jfk, "rb") as f:
            data = f.read()

        def create(**kw):
            return c.audio.transcriptions.create(model="tiny.en", file=("jfk.wav", data), **kw)

        text = create(response_format="text")
        check("g rest text: equals sotto transcribe's", text.strip() == want,
              f"{text!r} / {want!r}")
        r = create()
        check("g rest json: the text and the duration used",
              r.text == want and r.usage is not None and r.usage.seconds == 11,
              str(r)[:300])
        r = create(response_format="verbose_json", timestamp_granularities=["word", "segment"])
        words = r.words or []
        check("g rest verbose_json: segments, and words in time order",
              r.text == want and abs(r.duration - 11.0) < 0.1 and len(r.segments or []) >= 1 and
              len(words) == len(want.split()) and
              all(a.start <= a.end <= b.start + 0.01 for a, b in zip(words, words[1:])),
              str(r)[:300])
        srt = create(response_format="srt")
        blocks = [b for b in srt.strip().split("\n\n") if b]
        check("g rest srt: numbered blocks with times, the text",
              blocks and all(b.split("\n")[0] == str(i + 1) and " --> " in b.split("\n")[1]
                             for i, b in enumerate(blocks)) and
              " ".join(b.split("\n", 2)[2] for b in blocks) == want, srt[:300])
        vtt = create(response_format="vtt")
        check("g rest vtt: a WEBVTT document", vtt.startswith("WEBVTT\n\n") and
              "00:00:00.000 --> " in vtt, vtt[:200])
        deltas, done = [], None
        for ev in create(stream=True):
            if ev.type == "transcript.text.delta":
                deltas.append(ev.delta)
            elif ev.type == "transcript.text.done":
                done = ev.text
        check("g rest stream: deltas, then done with the whole text",
              len(deltas) >= 1 and "".join(deltas) == done == want, f"{deltas} {done!r}")
        models = [m.id for m in c.models.list()]
        check("g rest models: the loaded model", models == [os.path.basename(
            os.path.normpath(ts.ARGS.model))], str(models))

        def status_of(fn):
            try:
                fn()
            except openai.APIStatusError as e:
                return e.status_code, e.response.headers.get("retry-after"), e.body
            return 200, None, None
        st = status_of(lambda: c.audio.transcriptions.create(model="x", file=("e.wav", b"")))
        check("g rest: an empty file is 400 empty_file", st[0] == 400 and st[2] and
              st[2].get("code") == "empty_file", str(st))
        st = status_of(lambda: c.audio.transcriptions.create(
            model="x", file=("e.wav", b"RIFF this is not audio" * 20)))
        check("g rest: undecodable audio is 415 unsupported_audio", st[0] == 415 and st[2] and
              st[2].get("code") == "unsupported_audio" and st[2].get("param") == "file",
              str(st))
        st = status_of(lambda: c.audio.transcriptions.create(
            model="x", file=("big.wav", data + bytes(4 << 20))))
        check("g rest: a file over --max-upload is 413 file_too_large", st[0] == 413 and
              st[2] and st[2].get("code") == "file_too_large", str(st))
        # Decoded, but the engine refuses a field: not a file error.
        st = status_of(lambda: create(language="de"))
        check("g rest: a language the model lacks is 400 invalid_value",
              st[0] == 400 and st[2] and st[2].get("code") == "invalid_value" and
              st[2].get("param") is None and "English-only" in st[2].get("message", ""),
              str(st))
        req = urllib.request.Request(f"http://127.0.0.1:{srv.http}/v1/audio/transcriptions",
                                     data=b'{"file": "x"}', method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=20)
            st = (200, None)
        except urllib.error.HTTPError as e:
            st = (e.code, json.loads(e.read() or b"{}"))
        check("g rest: a body that is not multipart/form-data is 400",
              st[0] == 400 and "multipart" in json.dumps(st[1]), str(st))
        st = status_of(lambda: create(response_format="xml"))
        check("g rest: a bad field is 400 naming it",
              st[0] == 400 and st[2] and st[2].get("param") == "response_format", str(st))
        holds = []
        for _ in range(3):
            h = ws_connect(f"ws://127.0.0.1:{srv.http}/v1/stream")
            h.recv(10)
            holds.append(h)
        st = status_of(lambda: create())
        check("g rest: at capacity 503 with Retry-After", st[0] == 503 and st[1] == "1",
              str(st))
        for h in holds:
            h.close()
        ts.wait_streams_idle(srv, 20)

        # A recording over a minute, with both workers free, is split
        # between them: the text is as good as the whole file's.
        pcm, _, ref = ts.mix_audio()
        path = os.path.join(tmp, "long.wav")
        write_wav(path, pcm)
        with open(path, "rb") as f:
            long_data = f.read()
        n_split = sum("job split into 2 pieces" in ln for ln in srv.log())
        base = c.audio.transcriptions.create(model="x", file=("l.wav", long_data)).text
        whole = cli_text(path)
        check("g rest: a long recording is split across the two free workers",
              sum("job split into 2 pieces" in ln for ln in srv.log()) == n_split + 1)
        w_split, w_whole = ts.wer(ref, base), ts.wer(ref, whole or "")
        check(f"g rest split: WER {w_split:.3f} within 2 points of the whole file's "
              f"({w_whole:.3f})", w_split <= w_whole + 0.02, f"{base!r:.300}")

        # A worker killed in the middle of it: the jobs run again on the
        # restarted workers, and the streamed text has every segment once.
        deltas, done, killed = [], None, False
        for ev in c.audio.transcriptions.create(model="x", file=("l.wav", long_data),
                                                stream=True):
            if ev.type == "transcript.text.delta":
                deltas.append(ev.delta)
                if not killed:
                    killed = True
                    for pid in srv.worker_pids():
                        os.kill(pid, signal.SIGKILL)
            elif ev.type == "transcript.text.done":
                done = ev.text
        check("g rest: a worker SIGKILL mid-file costs nothing (same text, each "
              "segment once)", killed and done == base and "".join(deltas) == done,
              f"{len(deltas)} deltas; {done!r:.200} / {base!r:.200}")
        mt = srv.metrics()
        check("g rest: counted in /metrics",
              mt.get('sotto_protocol_streams_total{protocol="rest"}', 0) >= 8,
              json.dumps({k: v for k, v in mt.items() if "rest" in k}))
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_h_drain_every_dialect():
    """SIGTERM with every streaming dialect mid-sentence and an upload in
    flight: each gets its last words its own way, then its close."""
    try:
        import openai
        from wyoming.asr import Transcribe
        from wyoming.audio import AudioChunk, AudioStart
        from wyoming.client import AsyncTcpClient
    except ImportError as e:
        check("h the openai and wyoming packages are installed", False, str(e))
        return
    pcm = jfk_pcm()
    head = pcm[:2 * 16000 * 4]       # 4 s: "And so my fellow Americans"
    chunk = 2 * 16000 // 5           # 200 ms
    srv = ts.Server(["--drain-timeout", "30"], name="h", workers=2)
    sent = threading.Barrier(5)      # four streaming clients and the main thread
    out = {}

    def paced(send):
        t0 = time.monotonic()
        for k, at in enumerate(range(0, len(head), chunk)):
            send(head[at:at + chunk])
            time.sleep(max(0.0, t0 + (k + 1) * 0.2 - time.monotonic()))

    def until_closed(ws, into):
        try:
            while True:
                into.append(json.loads(ws.recv(40)))
        except ConnectionClosed as e:
            return e.rcvd.code if e.rcvd else None
        except TimeoutError:
            return "timeout"

    def vosk():
        replies = []
        with ws_connect(f"ws://127.0.0.1:{srv.vosk}") as ws:
            def send(b):
                ws.send(b)
                replies.append(json.loads(ws.recv(20)))
            paced(send)
            sent.wait(60)
            out["vosk"] = (until_closed(ws, replies), replies)

    def whisperlive():
        msgs = []
        f32 = lambda b: (np.frombuffer(b, dtype="<i2").astype("<f4") / 32768.0).tobytes()  # noqa: E731
        with ws_connect(f"ws://127.0.0.1:{srv.whisperlive}") as ws:
            ws.send(json.dumps({"uid": "h-1", "language": "en", "task": "transcribe",
                                "model": "tiny.en", "use_vad": True}))
            msgs.append(json.loads(ws.recv(20)))
            paced(lambda b: ws.send(f32(b)))
            sent.wait(60)
            out["whisperlive"] = (until_closed(ws, msgs), msgs)

    def realtime():
        evs = []
        with ws_connect(f"ws://127.0.0.1:{srv.http}/v1/realtime?intent=transcription") as ws:
            evs.append(json.loads(ws.recv(20)))
            paced(lambda b: ws.send(json.dumps({
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(pcm24(b)).decode()})))
            sent.wait(60)
            out["realtime"] = (until_closed(ws, evs), evs)

    def wyoming():
        async def run():
            events = []
            async with AsyncTcpClient("127.0.0.1", srv.wyoming, connect_timeout=10,
                                      read_timeout=40) as c:
                await c.write_event(Transcribe(language="en").event())
                await c.write_event(AudioStart(rate=16000, width=2, channels=1).event())
                t0 = time.monotonic()
                for k, at in enumerate(range(0, len(head), chunk)):
                    await c.write_event(AudioChunk(rate=16000, width=2, channels=1,
                                                   audio=head[at:at + chunk]).event())
                    await asyncio.sleep(max(0.0, t0 + (k + 1) * 0.2 - time.monotonic()))
                await asyncio.get_running_loop().run_in_executor(None, sent.wait, 60)
                while True:
                    ev = await c.read_event()
                    if ev is None:
                        break
                    events.append(ev)
            return events
        out["wyoming"] = asyncio.run(run())

    rest_client = openai.OpenAI(api_key="unused", base_url=f"http://127.0.0.1:{srv.http}/v1",
                                max_retries=0, timeout=120)
    with open(os.path.join(ts.ARGS.shared, "audio", ts.JFK), "rb") as f:
        wav = f.read()

    def rest():
        try:
            out["rest"] = rest_client.audio.transcriptions.create(
                model="tiny.en", file=("jfk.wav", wav), response_format="text")
        except Exception as e:  # noqa: BLE001
            out["rest"] = e

    try:
        threads = [threading.Thread(target=f, daemon=True)
                   for f in (vosk, whisperlive, realtime, wyoming)]
        for t in threads:
            t.start()
        sent.wait(60)
        up = threading.Thread(target=rest, daemon=True)
        up.start()
        time.sleep(0.3)               # the upload is in a worker by now
        srv.p.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        try:
            rest_client.audio.transcriptions.create(model="tiny.en", file=("jfk.wav", wav))
            late = None
        except openai.APIStatusError as e:
            late = e
        except Exception as e:  # noqa: BLE001
            late = e
        for t in threads + [up]:
            t.join(60)

        code, replies = out.get("vosk", (None, []))
        text = " ".join(r.get("text", "") for r in replies)
        check("h drain vosk: the final result, then close 1001",
              code == 1001 and any("result" in r for r in replies) and
              "americans" in text.lower(), f"{code} {json.dumps(replies)[-300:]}")
        code, msgs = out.get("whisperlive", (None, []))
        segs = [s for m in msgs for s in m.get("segments", [])]
        check("h drain whisperlive: completed segments with the words, then close 1001",
              code == 1001 and any(s.get("completed") for s in segs) and
              "americans" in " ".join(s.get("text", "") for s in segs).lower(),
              f"{code} {json.dumps(msgs)[-300:]}")
        code, evs = out.get("realtime", (None, []))
        done = [e for e in evs if e.get("type") ==
                "conversation.item.input_audio_transcription.completed"]
        check("h drain realtime: the completed transcript, then close 1001",
              code == 1001 and done and
              "americans" in " ".join(e.get("transcript", "") for e in done).lower(),
              f"{code} {json.dumps(evs)[-300:]}")
        events = out.get("wyoming", [])
        tr = [e for e in events if e.type == "transcript"]
        check("h drain wyoming: the transcript before the connection ends",
              tr and "americans" in (tr[-1].data or {}).get("text", "").lower(),
              f"{[(e.type, e.data) for e in events][-4:]}")
        r = out.get("rest")
        check("h drain rest: the upload in flight gets its transcription",
              isinstance(r, str) and ts.wer(JFK_REF, r) <= MAX_WER, repr(r)[:300])
        check("h drain rest: a new upload while draining gets 503 server_shutting_down",
              isinstance(late, openai.APIStatusError) and late.status_code == 503 and
              "server_shutting_down" in str(late.body), repr(late)[:300])
        try:
            rc = srv.p.wait(40)
        except subprocess.TimeoutExpired:
            rc = None
        check("h drain: the supervisor exits with status 0", rc == 0, f"status {rc}")
    finally:
        srv.stop(check_clean=False)


TESTS = [
    ("a", test_a_vosk),
    ("b", test_b_whisperlive),
    ("c", test_c_realtime),
    ("d", test_d_uniform),
    ("e", test_e_worker_kill),
    ("f", test_f_wyoming),
    ("g", test_g_openai_rest),
    ("h", test_h_drain_every_dialect),
]


def main():
    ts.parse_args(__doc__)
    if IMPORT_ERROR:
        print(f"test_dialects: {IMPORT_ERROR}", file=sys.stderr)
        return 2
    ts.load_manifest(ts.ARGS.shared, with_long=False)
    ts.set_subreaper()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    return ts.run_tests(TESTS, ts.ARGS.only, "test_dialects")


if __name__ == "__main__":
    sys.exit(main())
