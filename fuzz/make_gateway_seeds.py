#!/usr/bin/env python3
"""make_gateway_seeds.py - writes the seed corpus of fuzz/fuzz_gateway.c.

Usage: python3 fuzz/make_gateway_seeds.py [OUTDIR]
       (default fuzz/seeds/gateway; it rewrites every .bin file there)

Each seed is a protocol byte (0 native, 1 raw TCP, 2 vosk, 3 WhisperLive,
4 Realtime, 5 Wyoming, 6 request headers), then messages: an op byte
(even text, odd binary, 0xff the client ends), a 16-bit little-endian
length and the bytes.  Each is one whole session of its protocol as its
real clients send it, or a typical mistake:
  native_session.bin    config (s16, 16 kHz, partials), audio, finish;
  native_f32.bin        config for f32 at 48 kHz, audio in odd pieces;
  native_opus.bin       config for opus, two packet-shaped frames;
  native_bad.bin        bad JSON, a wrong type, unknown type, bad fields,
                        config after audio;
  tcp_session.bin       s16le in pieces that split samples, then EOF;
  vosk_session.bin      {"config": ...}, audio, {"eof": 1};
  whisperlive.bin       the options object, float32 audio, END_OF_AUDIO;
  realtime.bin          transcription_session.update, appends with base64
                        audio, commit, clear;
  wyoming.bin           describe, transcribe, audio-start, audio-chunk,
                        audio-stop, as Home Assistant frames them;
  headers_*.bin         Authorization and Sec-WebSocket-Protocol values
                        and Realtime intents;
  worker_*.bin          (byte 0 from 0xe0: what a worker sends back) a
                        stream's partial, finals with words, acks,
                        utterance_end, an error event and the close, for
                        the native protocol, raw TCP and each dialect; and
                        hostile replies: numbers out of range, wrong
                        types, events for an unknown stream, a message
                        type only the gateway sends, an acknowledgement of
                        chunks never sent.
All are under 8 KB.  Inputs kept because they once crashed the target
(crash-*.bin) are not the script's to rewrite: it leaves them in place.
"""
import base64
import json
import math
import os
import struct
import sys


def msg(op, data):
    if isinstance(data, str):
        data = data.encode()
    return bytes([op]) + struct.pack("<H", len(data)) + data


def text(obj):
    return msg(0, obj if isinstance(obj, str) else json.dumps(obj))


def binary(data):
    return msg(1, data)


END = msg(0xFF, b"")


def tone_s16(n, rate=16000):
    return b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                    for i in range(n))


def tone_f32(n, rate=16000):
    return b"".join(struct.pack("<f", 0.3 * math.sin(2 * math.pi * 440 * i / rate))
                    for i in range(n))


def wyoming(type_, data=None, payload=b""):
    data_b = json.dumps(data).encode() if data is not None else b""
    head = {"type": type_, "version": "1.5.2"}
    if data_b:
        head["data_length"] = len(data_b)
    if payload:
        head["payload_length"] = len(payload)
    return json.dumps(head).encode() + b"\n" + data_b + payload


# Worker -> gateway message types, as fuzz_gateway.c's worker mode
# numbers them (its types[] table), with bit 0x80 for an unknown stream.
W_EVENT, W_ACK, W_CLOSED, W_READY, W_BEAT = 0, 1, 2, 3, 4
W_JOB_SEGMENTS, W_JOB_DONE, W_JOB_PIECE, W_JOB_PIECE_DATA, W_OPEN = 5, 6, 7, 8, 9


def wmsg(typ, obj, seq=0):
    data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return bytes([typ]) + struct.pack("<IH", seq, len(data)) + data


def worker_session():
    """A stream's replies as a worker sends them (worker.c event_json)."""
    words = [{"text": " Ask", "start": 0.52, "end": 0.8, "probability": 0.91},
             {"text": " not", "start": 0.8, "end": 1.1, "probability": 0.88}]
    return wmsg(W_ACK, {"audio_time": 1.0, "retained_from": 0.0, "compute": 0.12}, 1) + \
        wmsg(W_EVENT, {"type": "partial", "utterance": 0, "start": 0.5, "end": 1.0,
                       "audio_time": 1.0, "text": " Ask not"}) + \
        wmsg(W_BEAT, b"", 0) + \
        wmsg(W_ACK, {"audio_time": 2.0, "retained_from": 0.3, "compute": 0.2, "cut": False}, 2) + \
        wmsg(W_EVENT, {"type": "final", "utterance": 0, "start": 0.52, "end": 1.1,
                       "audio_time": 2.0, "text": " Ask not", "words": words}) + \
        wmsg(W_EVENT, {"type": "utterance_end", "utterance": 0, "end": 1.6,
                       "audio_time": 2.0}) + \
        wmsg(W_EVENT, {"type": "error", "utterance": 1, "start": 2.0, "end": 2.0,
                       "audio_time": 2.0, "code": -4, "message": "sample 3 is NaN"}) + \
        wmsg(W_ACK, {"audio_time": 2.5, "retained_from": 2.4, "cut": True}, 3) + \
        wmsg(W_CLOSED, {"reason": "finished"})


def seeds():
    pcm = tone_s16(800)
    yield "native_session.bin", bytes([0]) + text(
        {"type": "config", "format": "pcm_s16le", "sample_rate": 16000,
         "partials": True, "vad": True, "language": "en"}) + binary(pcm) + \
        binary(pcm) + text({"type": "finish"})
    f32 = tone_f32(600, 48000)
    yield "native_f32.bin", bytes([0]) + text(
        {"type": "config", "format": "pcm_f32le", "sample_rate": 48000}) + \
        binary(f32[:1001]) + binary(f32[1001:]) + END
    yield "native_opus.bin", bytes([0]) + text({"format": "opus"}) + \
        binary(bytes([0xF8, 0xFF, 0xFE]) + bytes(60)) + binary(bytes([0x78]) + bytes(40)) + END
    yield "native_bad.bin", bytes([0]) + text("{not json") + text('{"type": 5}') + \
        text({"type": "dance"}) + text({"sample_rate": 1234}) + \
        text({"format": "mp3"}) + text({"language": "EN!"}) + text({"partials": "yes"}) + \
        binary(pcm[:101]) + text({"type": "config", "vad": False}) + \
        text({"type": "finish"})
    yield "tcp_session.bin", bytes([1]) + binary(pcm[:1]) + binary(pcm[1:333]) + \
        binary(pcm[333:]) + END
    yield "vosk_session.bin", bytes([2]) + text(
        {"config": {"sample_rate": 16000, "words": 1, "max_alternatives": 0}}) + \
        binary(pcm) + text('{"reset": 1}') + binary(pcm) + text('{"eof" : 1}')
    yield "whisperlive.bin", bytes([3]) + text(
        {"uid": "seed-uid", "language": "en", "task": "transcribe", "model": "tiny.en",
         "use_vad": True, "send_last_n_segments": 10, "initial_prompt": "Hello."}) + \
        binary(tone_f32(500)) + binary(b"END_OF_AUDIO")
    pcm24 = tone_s16(480, 24000)
    yield "realtime.bin", bytes([4]) + text(
        {"type": "transcription_session.update",
         "session": {"input_audio_format": "pcm16",
                     "input_audio_transcription": {"model": "whisper-1", "language": "en"},
                     "turn_detection": {"type": "server_vad"}}}) + \
        text({"type": "input_audio_buffer.append",
              "audio": base64.b64encode(pcm24).decode()}) + \
        text({"type": "input_audio_buffer.commit"}) + \
        text({"type": "input_audio_buffer.append",
              "audio": base64.b64encode(pcm24[:95]).decode()}) + \
        text({"type": "input_audio_buffer.clear"}) + \
        text({"type": "session.update", "session": {"turn_detection": None}})
    stream = wyoming("describe") + wyoming("transcribe", {"language": "en"}) + \
        wyoming("audio-start", {"rate": 16000, "width": 2, "channels": 1}) + \
        wyoming("audio-chunk", {"rate": 16000, "width": 2, "channels": 1}, pcm) + \
        wyoming("audio-stop")
    yield "wyoming.bin", bytes([5]) + binary(stream[:50]) + binary(stream[50:51]) + \
        binary(stream[51:]) + END
    key = "sk-fuzz-key-0123456789"
    yield "headers_bearer.bin", bytes([6]) + f"Bearer {key}\0\0intent=transcription".encode()
    yield "headers_protocols.bin", bytes([6]) + \
        f"\0sotto, bearer.{key},bearer.x\0transcription".encode()
    yield "headers_wrong.bin", bytes([6]) + b"bearer   sk-other \0bearer.\0intent=conversation"
    for proto, name in enumerate(["native", "tcp", "vosk", "whisperlive", "realtime",
                                  "wyoming"]):
        yield f"worker_{name}.bin", bytes([0xE0 + proto]) + worker_session()
    yield "worker_hostile.bin", bytes([0xE0]) + \
        wmsg(W_EVENT, {"type": "final", "utterance": 1e300, "start": -1e308,
                       "end": 1e308, "text": 7, "words": [{"text": None}, 3, {"text": ""}]}) + \
        wmsg(W_EVENT, {"type": "utterance_end", "utterance": -1e300}) + \
        wmsg(W_EVENT, b"{\"type\": \"partial\", \"utterance\": ") + \
        wmsg(W_ACK, {"audio_time": "x", "retained_from": 1e308, "compute": -1}, 0xFFFFFFFF) + \
        wmsg(0x80 | W_EVENT, {"type": "final", "text": " elsewhere"}) + \
        wmsg(W_JOB_DONE, {"error": "x", "code": 1e300}) + \
        wmsg(W_JOB_PIECE, {"pieces": 1e9}, 7) + \
        wmsg(W_JOB_PIECE_DATA, b"\x00" * 33, 7) + \
        wmsg(W_JOB_SEGMENTS, {"segments": [{"start": "a"}]}) + \
        wmsg(W_READY, b"[]") + \
        wmsg(W_OPEN, {"format": 1})
    # An acknowledgement far past the chunks sent, on a vosk stream (which
    # answers every acknowledged chunk): the gateway once looped on it.
    yield "worker_vosk_ack_past.bin", bytes([0xE2]) + \
        wmsg(W_ACK, {"audio_time": 1.0, "retained_from": 0.0}, 0xFFFFFFF0)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "seeds", "gateway")
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.endswith(".bin") and not f.startswith("crash-"):
            os.unlink(os.path.join(out, f))
    for name, data in seeds():
        assert len(data) < 8192, name
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
