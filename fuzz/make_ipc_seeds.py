#!/usr/bin/env python3
"""make_ipc_seeds.py - writes the seed corpus of fuzz/fuzz_ipc.c.

Usage: python3 fuzz/make_ipc_seeds.py [OUTDIR]
       (default fuzz/seeds/ipc; it rewrites every .bin file there)

Each seed is a byte stream on a gateway <-> worker channel (src/server/
ipc.h): 16-byte headers in host byte order (little-endian here, as on the
x86-64 machines sotto runs on), then the payload.
  gateway_session.bin   OPEN (every field, as the gateway sends it), three
                        AUDIO chunks, FINISH;
  resume.bin            OPEN of a resumed stream: prompt, time offset,
                        first utterance, resume words; AUDIO; DROP;
  opus.bin              OPEN for opus (its rate is ignored), a packet;
  worker_session.bin    READY, BEATs, EVENTs (partial, final with words,
                        utterance_end, error), ACK, CLOSED;
  open_bad_types.bin    OPENs whose fields have the wrong types, are out
                        of range or are not JSON at all;
  open_limits.bin       OPENs at and just past the prompt, word and
                        language limits (worker.h);
  resume_limit.bin,     an OPEN with as many resume words as allowed, and
  resume_over.bin       one with one more;
  many_small.bin        200 tiny messages back to back;
  bad_type.bin, bad_flags.bin, beat_payload.bin, huge_len.bin,
  no_stream.bin         one good message, then a header the reader must
                        refuse.
All are under 32 KB.
"""
import json
import os
import struct
import sys

OPEN, AUDIO, FINISH, DROP = 1, 2, 3, 4
READY, BEAT, EVENT, ACK, CLOSED = 16, 17, 18, 19, 20
MAX_PROMPT, MAX_WORD, MAX_RESUME = 4096, 256, 1024   # worker.h


def msg(type_, stream=0, seq=0, payload=b"", flags=0, length=None):
    if not isinstance(payload, bytes):
        payload = json.dumps(payload, separators=(",", ":")).encode()
    n = len(payload) if length is None else length
    return struct.pack("<IHHII", n, type_, flags, stream, seq) + payload


def pcm(n, step=97):
    return b"".join(struct.pack("<h", (i * step) % 20000 - 10000) for i in range(n))


FULL = {"format": "s16", "rate": 16000, "language": "en", "vad": True,
        "partials": True, "max_seconds": 14400, "time_offset": 0,
        "first_utterance": 0}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "fuzz/seeds/ipc"
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.endswith(".bin"):
            os.remove(os.path.join(out, f))

    def write(name, data):
        assert len(data) < 32768, name
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)

    good = msg(AUDIO, 1, 1, pcm(8))
    write("gateway_session.bin",
          msg(OPEN, 1, 0, FULL) + msg(AUDIO, 1, 1, pcm(800)) +
          msg(AUDIO, 1, 2, pcm(800)[:-1]) + msg(AUDIO, 1, 3, b"\x00") +
          msg(FINISH, 1))
    words = [{"text": " fellow", "start": 101.4, "end": 101.76, "probability": 0.99},
             {"text": " Americans.", "start": 101.76, "end": 102.22, "probability": 0.9}]
    write("resume.bin",
          msg(OPEN, 7, 0, dict(FULL, time_offset=100.5, first_utterance=3,
                               prompt=" And so my", resume_words=words)) +
          msg(AUDIO, 7, 5, pcm(320)) + msg(DROP, 7))
    write("opus.bin",
          msg(OPEN, 9, 0, {"format": "opus", "rate": 48000, "vad": False,
                           "language": None, "prompt": None}) +
          msg(AUDIO, 9, 1, bytes([0x08, 0x0b, 0xe4, 0xc1, 0x36, 0xec]) + bytes(20)))
    write("worker_session.bin",
          msg(READY, 0, 0, {"pid": 1234, "model": "/m/tiny.en", "n_mels": 80, "vad": True}) +
          msg(BEAT) + msg(BEAT, 3, 1500) +
          msg(EVENT, 3, 0, {"type": "partial", "utterance": 0, "start": 0.02,
                            "end": 1.66, "audio_time": 1.8, "text": " And so"}) +
          msg(EVENT, 3, 0, {"type": "final", "utterance": 0, "start": 0.02,
                            "end": 1.74, "audio_time": 2.8, "text": " And so",
                            "words": [{"text": " And", "start": 0.02, "end": 0.76,
                                       "probability": 0.66}]}) +
          msg(EVENT, 3, 0, {"type": "utterance_end", "utterance": 0, "end": 2.57,
                            "audio_time": 2.88}) +
          msg(EVENT, 3, 0, {"type": "error", "code": -6, "message": "opus: corrupted stream"}) +
          msg(ACK, 3, 12, {"audio_time": 2.88, "retained_from": 0.5, "compute": 0.2}) +
          msg(CLOSED, 3, 0, {"reason": "finished", "audio_seconds": 11,
                             "compute_seconds": 4.1, "n_passes": 14}))
    bad = [b"", b"null", b"[1,2]", b"{\"format\":", b"{\"rate\":1e999}",
           {"format": 16}, {"format": "mp3"}, {"rate": "16000"}, {"rate": 100},
           {"rate": 16000.5}, {"vad": 1}, {"partials": "yes"}, {"language": "EN"},
           {"language": 5}, {"language": "x"}, {"max_seconds": -1},
           {"max_seconds": 1e9}, {"time_offset": "0"}, {"first_utterance": 1.5},
           {"first_utterance": -1}, {"prompt": 5}, {"resume_words": {}},
           {"resume_words": [1]}, {"resume_words": [{"text": "a"}]},
           {"resume_words": [{"text": "a", "start": 2, "end": 1}]},
           {"resume_words": [{"text": 3, "start": 0, "end": 1}]},
           {"resume_words": [{"text": "a", "start": 0, "end": 1, "probability": 2}]},
           {"format": "opus", "rate": "x"}]
    write("open_bad_types.bin",
          b"".join(msg(OPEN, 10 + i, 0, b if isinstance(b, bytes) else b)
                   for i, b in enumerate(bad)))
    w = {"text": "w", "start": 0, "end": 0}
    write("open_limits.bin",
          msg(OPEN, 1, 0, {"prompt": "p" * MAX_PROMPT}) +
          msg(OPEN, 2, 0, {"prompt": "p" * (MAX_PROMPT + 1)}) +
          msg(OPEN, 3, 0, {"resume_words": [dict(w, text="x" * MAX_WORD)]}) +
          msg(OPEN, 4, 0, {"resume_words": [dict(w, text="x" * (MAX_WORD + 1))]}) +
          msg(OPEN, 7, 0, {"language": "abcdefghijklmno"}) +
          msg(OPEN, 8, 0, {"language": "abcdefghijklmnop"}))
    write("resume_limit.bin", msg(OPEN, 5, 0, {"resume_words": [w] * MAX_RESUME}))
    write("resume_over.bin", msg(OPEN, 6, 0, {"resume_words": [w] * (MAX_RESUME + 1)}))
    write("many_small.bin",
          b"".join(msg([FINISH, DROP, BEAT, AUDIO][i % 4], 0 if i % 4 == 2 else i + 1,
                       i, b"" if i % 4 != 3 else bytes([i & 255])) for i in range(200)))
    write("bad_type.bin", good + msg(99, 1, 0, b"{}"))
    write("bad_flags.bin", good + msg(EVENT, 1, 0, b"{}", flags=1))
    write("beat_payload.bin", good + msg(BEAT, 0, 0, b"xx"))
    write("huge_len.bin", good + msg(AUDIO, 1, 2, b"\0" * 32, length=(1 << 20) + 1))
    write("no_stream.bin", good + msg(AUDIO, 0, 2, b"\0\0"))


if __name__ == "__main__":
    main()
