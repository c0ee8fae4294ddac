#!/usr/bin/env python3
"""Streaming transcription with faster-whisper on a simulated real-time clock.

The reference for `sotto transcribe --stream`: the same streaming policy, the
same simulated clock and the same JSON lines, with faster-whisper doing the
transcription, so that bench/stream_bench.py can compare latency, speed,
accuracy and memory of the two engines under one policy.

Usage:
    stream_fw.py --model DIR [--threads 2] [--beam 1] [--chunk-ms 1000]
                 [--json] [-v] FILE
    stream_fw.py --model DIR --offline [--beam 1] FILE   # one offline pass

Simulated clock (as sotto's src/client/simulate.c)
    Audio "arrives" in chunks of --chunk-ms: chunk k has arrived at time
    (k+1) * chunk (the last, shorter one at the file's duration).  The clock
    starts at 0, after model loading.  Before each feed the clock moves on to
    the arrival of the next chunk (if it is not already past it); the feed
    takes every whole chunk that has arrived by then (one when compute keeps
    up, several when it lags), and the clock then advances by the measured
    time of the feed call (time.perf_counter).  Nothing sleeps, so a run
    finishes sooner than real time when compute is cheaper than real time.
    The events a feed produced are stamped with the clock after it ("emit"),
    as a caller polling after each feed would see them.  After the last
    chunk, the end-of-stream flush is timed and stamped the same way.

Policy (mirrors src/stream/stream.c and agree.c)
    VAD gate: faster-whisper's bundled Silero v6 (faster_whisper.vad), run
      causally: every 512-sample frame goes through the ONNX session once,
      as it completes, with the LSTM state (h, c) and the 64-sample context
      carried from frame to frame and feed to feed (the whole frames of one
      feed go in one session call; this gives exactly the probabilities of
      faster-whisper's own whole-file pass, with no lookahead).  Its time is
      inside the measured feed time.  A frame with probability >=
      --threshold (0.5) opens an utterance, whose audio starts with the last
      --speech-pad-ms (300) of audio before it.  In an utterance, a frame
      below threshold - 0.15 starts a pause (a frame >= threshold cancels
      it); a pause of --min-silence-ms (600) ends the utterance, keeping
      speech-pad-ms of the pause in it.  An utterance with less than
      --min-speech-ms (150) of speech frames and no words is dropped
      silently.
    Passes: an utterance's first pass runs once it holds --first-chunk (0.5)
      s of speech frames, later ones after every --min-chunk (1.0) s of new
      audio in the buffer, both with one VAD frame of slack (speech + 512
      samples >= first_chunk, new + 512 >= min_chunk: audio reaches the
      buffer in whole frames, so a 1 s feed brings 31 frames = 0.992 s;
      --strict-hop drops the slack), checked at the end of each feed (taken
      in pieces of at most 4 s).  A pass transcribes the whole buffer as one
      window (faster-whisper encodes it padded to 30 s; sotto encodes the
      buffer + 3 s) with word timestamps, timestamps on, beam --beam (1),
      best_of 5, at most min(16 + 10 tokens per second of buffer, 224) new
      tokens, no VAD inside, and as initial prompt the last 200 bytes (from
      a space) of committed text that lies before the buffer, earlier
      utterances included.  Like sotto__transcribe_window, a pass decodes
      that one window only: faster-whisper would go on to a second window
      over the audio after the last word, which the script stops before it
      is encoded (--all-windows lets it run).
    Quick passes: a pass that is not the last of its utterance, over a
      buffer of at most --trim-s s, decodes once at temperature 0; if any of
      its segments has a compression ratio over 2.4 (the text loops), the
      pass is skipped: no agreement step, no partial, no trimming, and the
      pending words stay as they were (the next pass sees more audio).  The
      last pass of an utterance and passes over a longer buffer use the
      temperature ladder 0, 0.2 .. 1.0 (--no-fallback: 0 only, everywhere).
    LocalAgreement-2: of a pass's words, those starting at or before the
      last committed end - 0.1 s are dropped; when the first remaining word
      starts within 1 s of the last committed end, the longest 5..1-word run
      that repeats the committed tail of this utterance is dropped; then the
      longest common prefix with the previous pass's pending words (same
      text ignoring case, spaces and ASCII punctuation, and starts within
      1 s) is committed (a final event); the rest is pending (a partial
      event, sent when its text changed).
    Trimming, after every pass that is neither the last nor skipped: once
      the buffer is longer than --trim-s (12) s, the cut is the end of the
      latest segment of the pass, except the last segment, that ends at or
      before the last committed word; then, scanning the buffer's committed
      words from the last back while a word ends after that cut, the first
      whose text ends in '.', '?' or '!' moves the cut to its end.  With no
      cut after the buffer's start and a buffer longer than trim-s + 5 s,
      the cut is the last committed word's end.  With still none and a
      buffer longer than 28 - 2 * min_chunk s, the pending words are
      committed as they stand and the buffer is cut after them (at its
      start + length - (28 - 2 * min_chunk) / 2 when that leaves no
      committed word ending after its start).
      The committed words before the cut go to the prompt history.  No
      audio is added that would make the buffer longer than 28 s before a
      pass has trimmed it.
    End of utterance and end of stream: a last pass commits every word of
      its hypothesis (or the pending words, when it fails), then
      utterance_end; at the end of the stream the samples short of a VAD
      frame go into an open utterance first.

Output (--json): one JSON object per line, as sotto's --stream:
    {"type":"partial","emit","audio","utterance","start","end","text","words"}
    {"type":"final","emit","audio","utterance","start","end","text","words":
      [{"start","end","text","p"}]}
    {"type":"utterance_end","emit","audio","utterance","end"}
    {"type":"error","emit","audio","utterance","code","message"}
    {"type":"stats","audio_seconds","compute_seconds",...}   (last line)
Without --json: one line per event, then the stats as JSON on stderr.
-v logs every pass on stderr (quick or full, buffer, time taken, tokens,
temperature, compression ratio, windows stopped, skips) and every trim decision.

--offline: transcribes the whole file in one faster-whisper call with its
default options (temperature fallback, conditioned on previous text, no
VAD) and beam --beam; prints {"duration", "text", "seconds"} as JSON: the
offline baseline of stream_bench.py (the counterpart of
`sotto transcribe -b 1`).
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

SR = 16000
FRAME = 512            # Silero VAD step (32 ms)
CONTEXT = 64           # samples of the previous frame Silero prepends
MAX_BUFFER_S = 28.0    # the most audio a pass may see
PROMPT_BYTES = 200     # UTF-8 bytes of committed text given as the prompt
HISTORY_BYTES = 2000   # bytes of committed text kept for the prompt
TOKENS_BASE, TOKENS_PER_S = 16, 10
MAX_NEW_TOKENS = 224   # the engine's cap: half the 448-token text context
MAX_PIECE_S = 4.0
TRIM_SLACK_S = 5.0     # how far past trim-s the buffer may grow without a cut
TEMPERATURES = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
COMPRESSION_RATIO_THRESHOLD = 2.4
AGREE_MAX_SHIFT = 1.0
AGREE_MAX_NGRAM = 5


def default_model():
    if os.environ.get("SOTTO_MODEL"):
        return os.environ["SOTTO_MODEL"]
    sotto = os.path.join(REPO, "build", "sotto")
    if os.access(sotto, os.X_OK):
        try:
            p = subprocess.run([sotto, "model", "path", "tiny.en"], capture_output=True,
                               text=True, timeout=30)
            path = p.stdout.strip()
            if p.returncode == 0 and os.path.isdir(path):
                return path
        except (OSError, subprocess.SubprocessError):
            pass
    return "/tmp/tiny" if os.path.isdir("/tmp/tiny") else None


def same_text(a, b):
    """Equal ignoring case, whitespace and ASCII punctuation (agree.c)."""
    def key(s):
        return "".join(c.lower() if c.isascii() else c for c in s
                       if not (c.isascii() and (c.isspace() or
                                                (c.isprintable() and not c.isalnum()))))
    return key(a) == key(b)


class GrowBuf:
    """A float32 array with amortized O(1) appends (the utterance buffer)."""

    def __init__(self, np):
        self.np = np
        self.a = np.zeros(SR * 4, dtype=np.float32)
        self.n = 0

    def __len__(self):
        return self.n

    def view(self):
        return self.a[:self.n]

    def append(self, x):
        if self.n + len(x) > len(self.a):
            b = self.np.zeros(max(2 * len(self.a), self.n + len(x)), dtype=self.np.float32)
            b[:self.n] = self.a[:self.n]
            self.a = b
        self.a[self.n:self.n + len(x)] = x
        self.n += len(x)

    def truncate(self, n):
        self.n = min(self.n, n)

    def drop_front(self, k):
        k = min(k, self.n)
        self.a[:self.n - k] = self.a[k:self.n].copy()
        self.n -= k


class Word:
    __slots__ = ("start", "end", "text", "p")

    def __init__(self, start, end, text, p):
        self.start, self.end, self.text, self.p = start, end, text, p

    def as_json(self):
        return {"start": round(self.start, 3), "end": round(self.end, 3),
                "text": self.text, "p": round(self.p, 3)}


class Agree:
    """LocalAgreement-2 (src/stream/agree.c)."""

    def __init__(self):
        self.pending = []      # the last pass's uncommitted words
        self.committed = []    # committed since the last reset, still in the buffer
        self.last_end = -1e9

    def _commit(self, words, out):
        for w in words:
            out.append(w)
            self.committed.append(w)
            self.last_end = max(self.last_end, w.end)

    def insert(self, hyp, commit_all):
        out = []
        hyp = [w for w in hyp]
        i = 0
        while i < len(hyp) and hyp[i].start <= self.last_end - 0.1:
            i += 1
        hyp = hyp[i:]
        if hyp and self.committed and abs(hyp[0].start - self.last_end) < 1.0:
            c = self.committed
            for n in range(AGREE_MAX_NGRAM, 0, -1):
                if n <= len(c) and n <= len(hyp) and all(
                        same_text(c[len(c) - n + j].text, hyp[j].text) for j in range(n)):
                    hyp = hyp[n:]
                    break
        k = 0
        while (k < len(hyp) and k < len(self.pending)
               and same_text(hyp[k].text, self.pending[k].text)
               and abs(hyp[k].start - self.pending[k].start) <= AGREE_MAX_SHIFT):
            k += 1
        if commit_all:
            k = len(hyp)
        self._commit(hyp[:k], out)
        self.pending = hyp[k:]
        return out

    def commit_pending(self):
        out = []
        self._commit(self.pending, out)
        self.pending = []
        return out

    def forget_before(self, t):
        k = 0
        while k < len(self.committed) and self.committed[k].end <= t:
            k += 1
        del self.committed[:k]

    def reset(self):
        self.pending, self.committed = [], []


def f32(x):
    """x rounded to a C float (the stream parameters are floats in sotto)."""
    return struct.unpack("f", struct.pack("f", x))[0]


def samples(seconds):
    """(int64_t)(seconds * SR) with seconds a C float: the product is a float."""
    return int(f32(f32(seconds) * SR))


class NextWindow(Exception):
    """Stops faster-whisper before it encodes a second window of a pass."""


class Streamer:
    def __init__(self, model, vad, args):
        import numpy as np
        self.np = np
        self.model, self.vad, self.args = model, vad, args
        self.thr = f32(args.threshold)                 # C floats, as in gate_frame
        neg = f32(self.thr - f32(0.15))
        self.neg = neg if neg > f32(0.01) else f32(0.01)
        self.min_silence = args.min_silence_ms * SR // 1000
        self.pad = args.speech_pad_ms * SR // 1000
        self.min_speech = args.min_speech_ms * SR // 1000
        self.min_chunk = samples(args.min_chunk)
        self.first_chunk = samples(args.first_chunk)
        self.slack = 0 if args.strict_hop else FRAME
        # sotto__transcribe_window decodes one window per pass; faster-whisper
        # goes on over the audio after the last word of the first.  A
        # second call of the encoder (one per window) stops the pass there.
        self.windows = 0
        encode = model.encode

        def encode_one(features):
            self.windows += 1
            if self.windows > 1:
                self.stats["extra_windows"] += 1
                if not args.all_windows:
                    raise NextWindow()
            return encode(features)
        model.encode = encode_one
        # VAD
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        self.c = np.zeros((1, 1, 128), dtype=np.float32)
        self.ctx = np.zeros(CONTEXT, dtype=np.float32)
        self.frame = np.zeros(0, dtype=np.float32)    # samples short of a frame
        self.n_in = 0                                  # samples taken in
        # gate
        self.in_utt = False
        self.silence_at = None
        self.utt_speech = 0
        self.utt_id = 0
        self.utt_passes = 0
        self.pre = np.zeros(0, dtype=np.float32)
        # buffer
        self.buf = GrowBuf(np)
        self.buf_start = 0
        self.since_pass = 0
        # commit state
        self.agree = Agree()
        self.partial = None
        self.hist = b""       # committed text before the buffer, UTF-8
        # events of the current feed, stamped when it returns
        self.queue = []
        self.stats = {"speech_seconds": 0.0, "vad_seconds": 0.0, "pass_seconds": 0.0,
                      "passes": 0, "skipped": 0, "extra_windows": 0, "utterances": 0,
                      "errors": 0, "trims": 0,
                      "forced_commits": 0, "max_buffer_seconds": 0.0,
                      "max_pass_seconds": 0.0}

    # ---- events ----
    def push(self, ev):
        ev["audio"] = round(self.n_in / SR, 3)
        ev["utterance"] = self.utt_id
        if (ev["type"] == "partial" and self.queue and self.queue[-1]["type"] == "partial"):
            self.queue[-1] = ev           # a partial supersedes one still waiting
        else:
            self.queue.append(ev)

    def emit_words(self, typ, words):
        self.push({"type": typ,
                   "start": round(words[0].start, 3) if words else 0.0,
                   "end": round(words[-1].end, 3) if words else 0.0,
                   "text": "".join(w.text for w in words),
                   "words": [w.as_json() for w in words]})

    def take_events(self):
        q, self.queue = self.queue, []
        return q

    # ---- history (prompt) ----
    def hist_append(self, text):
        self.hist += text.encode("utf-8")
        if len(self.hist) > HISTORY_BYTES:
            # Keep the tail, from a space.
            sp = self.hist.find(b" ", len(self.hist) - HISTORY_BYTES // 2)
            self.hist = self.hist[sp:] if sp >= 0 else b""

    def hist_take_committed(self, t):
        for w in self.agree.committed:
            if w.end <= t:
                self.hist_append(w.text)
        self.agree.forget_before(t)

    def prompt(self):
        text = self.hist
        if len(text) > PROMPT_BYTES:
            text = text[len(text) - PROMPT_BYTES:]
            sp = text.find(b" ")
            text = text[sp:] if sp >= 0 else b""
        return text.decode("utf-8", "replace") if text else None

    # ---- buffer ----
    def buf_append(self, x):
        if self.in_utt and len(self.buf) and len(self.buf) + len(x) > MAX_BUFFER_S * SR:
            self.run_pass(last=False)
        self.buf.append(x)
        self.since_pass += len(x)
        self.stats["speech_seconds"] += len(x) / SR

    def pre_push(self, x):
        if self.pad:
            self.pre = self.np.concatenate([self.pre, x])[-self.pad:]

    def buf_cut(self, t):
        k = int((t - self.buf_start / SR) * SR)
        if k <= 0:
            return
        k = min(k, len(self.buf))
        self.buf.drop_front(k)
        self.buf_start += k

    # ---- passes ----
    def transcribe(self, quick):
        """One pass over the buffer; returns (error, words, segment ends, loops)."""
        secs = len(self.buf) / SR
        base = self.buf_start / SR
        temps = TEMPERATURES[:1] if quick or self.args.no_fallback else TEMPERATURES
        max_new = min(TOKENS_BASE + int(TOKENS_PER_S * secs), MAX_NEW_TOKENS)
        prompt = self.prompt()
        segs, err = [], None
        self.windows = 0
        t = time.perf_counter()
        try:
            it, _ = self.model.transcribe(
                self.buf.view(), language="en", task="transcribe", beam_size=self.args.beam,
                best_of=5, temperature=temps,
                compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD,
                without_timestamps=False, word_timestamps=True,
                condition_on_previous_text=False, initial_prompt=prompt,
                max_new_tokens=max_new, vad_filter=False)
            try:
                for seg in it:
                    segs.append(seg)
            except NextWindow:
                pass
        except Exception as e:  # reported as an error event, the stream goes on
            segs, err = [], f"{type(e).__name__}: {e}"
        dt = time.perf_counter() - t
        self.stats["pass_seconds"] += dt
        self.stats["max_pass_seconds"] = max(self.stats["max_pass_seconds"], dt)
        self.stats["passes"] += 1
        self.stats["max_buffer_seconds"] = max(self.stats["max_buffer_seconds"], secs)
        self.utt_passes += 1
        loops = any(s.compression_ratio > COMPRESSION_RATIO_THRESHOLD for s in segs)
        words = [Word(base + w.start, base + w.end, w.word, w.probability)
                 for s in segs for w in (s.words or [])]
        if self.args.verbose:
            cr = max((s.compression_ratio for s in segs), default=0.0)
            temp = max((s.temperature for s in segs), default=0.0)
            print(f"stream_fw: audio {self.n_in / SR:7.2f}: {'quick' if quick else 'full'} "
                  f"pass over {base:.2f}+{secs:.2f} s took {dt:.2f} s, {len(segs)} segment(s), "
                  f"{sum(len(s.tokens) for s in segs)} tokens, {len(words)} words, "
                  f"temperature {temp:.1f}, compression {cr:.2f}"
                  + (f", {self.windows - 1} more window(s) "
                     + ("run" if self.args.all_windows else "stopped")
                     if self.windows > 1 else "")
                  + (", loops: skipped" if quick and loops and err is None else "")
                  + (f", ERROR {err}" if err else ""), file=sys.stderr, flush=True)
        return err, words, [base + s.end for s in segs], loops

    def run_pass(self, last):
        self.since_pass = 0
        committed, seg_end = [], []
        if len(self.buf):
            # Intermediate passes decode once, at temperature 0, and are
            # dropped when their text loops; the last pass of an utterance
            # and passes over a buffer due for trimming use the ladder.
            quick = not last and len(self.buf) / SR <= self.args.trim_s
            err, hyp, seg_end, loops = self.transcribe(quick)
            if err is not None:
                self.stats["errors"] += 1
                self.push({"type": "error", "start": round((self.buf_start + len(self.buf)) / SR, 3),
                           "end": round((self.buf_start + len(self.buf)) / SR, 3),
                           "code": -1, "message": err})
            elif quick and loops:
                self.stats["skipped"] += 1
                return
            else:
                committed = self.agree.insert(hyp, last)
        if last:
            committed += self.agree.commit_pending()
        if committed:
            self.emit_words("final", committed)
        if not last:
            text = "".join(w.text for w in self.agree.pending)
            if self.partial is None or text != self.partial:
                self.partial = text
                self.emit_words("partial", self.agree.pending)
            self.trim(seg_end)

    def trim(self, seg_end):
        length = len(self.buf) / SR
        hard = MAX_BUFFER_S - 2.0 * self.args.min_chunk
        start = self.buf_start / SR
        if length <= self.args.trim_s:
            return
        cut, why = -1.0, "none"
        # The latest segment end, but the last segment's, at or before the
        # committed text's end.
        for e in reversed(seg_end[:-1]):
            if e <= self.agree.last_end:
                cut, why = e, "segment"
                break
        # A later committed word that ends a sentence.
        for w in reversed(self.agree.committed):
            if w.end <= cut:
                break
            if w.text and w.text[-1] in ".?!":
                cut, why = w.end, "sentence"
                break
        # Failing both, past trim-s + TRIM_SLACK_S: the last committed word.
        if cut <= start and length > self.args.trim_s + TRIM_SLACK_S:
            cut, why = self.agree.last_end, "slack"
        if self.args.verbose:
            print(f"stream_fw:   trim? buffer {start:.2f}+{length:.2f} s, committed to "
                  f"{self.agree.last_end:.2f}, segment ends "
                  f"{[round(float(e), 2) for e in seg_end]}: cut {cut:.2f} ({why})",
                  file=sys.stderr, flush=True)
        if cut <= start and length > hard:
            forced = self.agree.commit_pending()
            if forced:
                self.stats["forced_commits"] += 1
                self.emit_words("final", forced)
            cut = self.agree.last_end
            if cut <= start:
                cut = start + length - hard / 2
        if cut <= start:
            return
        self.hist_take_committed(cut)
        self.buf_cut(cut)
        self.stats["trims"] += 1

    # ---- utterances ----
    def utt_begin(self, at):
        self.in_utt = True
        self.silence_at = None
        self.utt_speech = 0
        self.utt_passes = 0
        self.buf.truncate(0)
        self.buf_start = at
        self.since_pass = 0
        self.partial = None

    def utt_end(self):
        if not self.in_utt:
            return
        end = (self.buf_start + len(self.buf)) / SR
        had_words = bool(self.agree.pending or self.agree.committed)
        if not (self.utt_speech < self.min_speech and not had_words):
            self.run_pass(last=True)
            self.push({"type": "utterance_end", "end": round(end, 3)})
            self.stats["utterances"] += 1
            self.utt_id += 1
        self.hist_take_committed(float("inf"))
        self.agree.reset()
        self.pre_push(self.buf.view())   # the end of this utterance is the next one's pre-roll
        self.buf.truncate(0)
        self.in_utt = False
        self.partial = None

    def gate_frame(self, f, at, prob):
        if not self.in_utt:
            if prob < self.thr:
                self.pre_push(f)
                return
            self.utt_begin(at - len(self.pre))
            self.buf_append(self.pre)
            self.pre = self.pre[:0]
            self.since_pass = 0
        self.buf_append(f)
        if prob >= self.thr:
            self.silence_at = None
            self.utt_speech += FRAME
        elif prob < self.neg:
            if self.silence_at is None:
                self.silence_at = at
            if at + FRAME - self.silence_at >= self.min_silence:
                keep_to = self.silence_at + self.pad
                buf_end = self.buf_start + len(self.buf)
                if keep_to < buf_end:
                    kept = len(self.buf) - (buf_end - keep_to)
                    tail = self.buf.view()[kept:].copy()
                    self.buf.truncate(kept)
                    self.utt_end()
                    self.pre_push(tail)
                else:
                    self.utt_end()

    def pass_due(self):
        if not self.in_utt or len(self.buf) == 0:
            return False
        # Audio reaches the buffer in whole VAD frames (a 1 s feed brings 31
        # frames = 0.992 s): the thresholds allow one frame of slack.
        if self.utt_passes == 0:
            return self.utt_speech + self.slack >= self.first_chunk
        return self.since_pass + self.slack >= self.min_chunk

    # ---- feeding ----
    def vad_probs(self, frames):
        np = self.np
        t = time.perf_counter()
        prev = np.concatenate([self.ctx[None, :], frames[:-1, -CONTEXT:]], 0)
        x = np.ascontiguousarray(np.concatenate([prev, frames], 1), dtype=np.float32)
        o, self.h, self.c = self.vad.session.run(None, {"input": x, "h": self.h, "c": self.c})
        self.ctx = frames[-1, -CONTEXT:].copy()
        self.stats["vad_seconds"] += time.perf_counter() - t
        return o.reshape(-1)

    def feed(self, x):
        np = self.np
        piece = int(MAX_PIECE_S * SR)
        for p0 in range(0, len(x), piece):
            data = np.concatenate([self.frame, x[p0:p0 + piece]])
            n = len(data) // FRAME
            first = self.n_in - len(self.frame)          # stream index of data[0]
            if n:
                frames = data[:n * FRAME].reshape(n, FRAME)
                probs = self.vad_probs(frames)
                for i in range(n):
                    self.n_in = first + (i + 1) * FRAME
                    self.gate_frame(frames[i], first + i * FRAME, float(probs[i]))
            self.n_in = first + len(data)
            self.frame = data[n * FRAME:].copy()
            if self.pass_due():
                self.run_pass(last=False)

    def finish(self):
        if len(self.frame) and self.in_utt:
            self.buf_append(self.frame)
        self.frame = self.frame[:0]
        self.utt_end()


def run_stream(args):
    import numpy as np
    from faster_whisper import WhisperModel, decode_audio
    from faster_whisper.vad import get_vad_model

    def out(ev, emit):
        head = {"type": ev["type"], "emit": round(emit, 3), "audio": ev["audio"],
                "utterance": ev["utterance"]}
        ev = {**head, **{k: v for k, v in ev.items() if k not in head}}
        if args.json:
            sys.stdout.write(json.dumps(ev, ensure_ascii=False) + "\n")
        elif ev["type"] == "utterance_end":
            print(f"{emit:8.2f}  utterance_end #{ev['utterance']} at {ev['end']:.2f}")
        elif ev["type"] == "error":
            print(f"{emit:8.2f}  error         {ev['message']}")
        else:
            print(f"{emit:8.2f}  {ev['type']:<13} [{ev['start']:7.2f} {ev['end']:7.2f}] "
                  f"{ev['text']}")
        counts["words"] += len(ev.get("words", [])) if ev["type"] == "final" else 0

    counts = {"words": 0}
    t = time.perf_counter()
    model = WhisperModel(args.model, device="cpu", compute_type=args.compute_type,
                         cpu_threads=args.threads, num_workers=1)
    vad = get_vad_model()
    load_s = time.perf_counter() - t
    audio = decode_audio(args.file, sampling_rate=SR).astype(np.float32)
    if len(audio) == 0:
        print("stream_fw: empty audio", file=sys.stderr)
        return 2

    st = Streamer(model, vad, args)
    chunk = max(1, args.chunk_ms * SR // 1000)
    n = len(audio)
    clock, fed, compute, max_lag, feeds = 0.0, 0, 0.0, 0.0, 0
    wall0 = time.perf_counter()
    while fed < n:
        nxt = min(fed + chunk, n)
        clock = max(clock, nxt / SR)
        avail = min(max(int(clock * SR) // chunk * chunk, nxt), n)
        max_lag = max(max_lag, clock - nxt / SR)
        t = time.perf_counter()
        st.feed(audio[fed:avail])
        dt = time.perf_counter() - t
        clock += dt
        compute += dt
        feeds += 1
        fed = avail
        for ev in st.take_events():
            out(ev, clock)
    t = time.perf_counter()
    st.finish()
    dt = time.perf_counter() - t
    clock += dt
    compute += dt
    for ev in st.take_events():
        out(ev, clock)
    dur = n / SR
    stats = {"type": "stats", "audio_seconds": round(dur, 3),
             "compute_seconds": round(compute, 3), "rtf": round(compute / dur, 4),
             "end_clock": round(clock, 3), "max_feed_lag_seconds": round(max_lag, 3),
             "feeds": feeds, "words": counts["words"],
             "wall_seconds": round(time.perf_counter() - wall0, 3),
             "model_load_seconds": round(load_s, 3), "chunk_ms": args.chunk_ms,
             "beam_size": args.beam, "threads": args.threads, "engine": "faster-whisper"}
    for key, v in st.stats.items():
        stats[key] = round(v, 3) if isinstance(v, float) else v
    if args.json:
        sys.stdout.write(json.dumps(stats) + "\n")
    else:
        print(json.dumps(stats), file=sys.stderr)
    sys.stdout.flush()
    return 0


def run_offline(args):
    from faster_whisper import WhisperModel
    model = WhisperModel(args.model, device="cpu", compute_type=args.compute_type,
                         cpu_threads=args.threads, num_workers=1)
    t = time.perf_counter()
    segs, info = model.transcribe(args.file, language="en", beam_size=args.beam,
                                  vad_filter=False)
    text = "".join(s.text for s in segs).strip()
    json.dump({"duration": info.duration, "text": text,
               "seconds": round(time.perf_counter() - t, 3)}, sys.stdout)
    print()
    return 0


def main():
    ap = argparse.ArgumentParser(description="faster-whisper streaming on a simulated clock")
    ap.add_argument("--model", default=None,
                    help="CTranslate2 Whisper model dir (default: $SOTTO_MODEL, "
                         "`build/sotto model path tiny.en`, /tmp/tiny)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam", "-b", type=int, default=1)
    ap.add_argument("--compute-type", default="float32")
    ap.add_argument("--chunk-ms", type=int, default=1000)
    ap.add_argument("--min-chunk", type=float, default=1.0,
                    help="seconds of new audio between passes")
    ap.add_argument("--first-chunk", type=float, default=0.5,
                    help="seconds of speech before an utterance's first pass")
    ap.add_argument("--strict-hop", action="store_true",
                    help="no slack: count only whole VAD frames towards first-chunk and "
                         "min-chunk (a 1 s chunk then often holds 31 frames = 0.992 s and "
                         "the pass waits for the next chunk; sotto before its slack rule); "
                         "default: one frame (512 samples) of slack, as stream.c")
    ap.add_argument("--trim-s", type=float, default=12.0,
                    help="trim the buffer once it is longer than this; intermediate passes "
                         "over a buffer of at most this decode at temperature 0 only")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--min-silence-ms", type=int, default=600)
    ap.add_argument("--speech-pad-ms", type=int, default=300)
    ap.add_argument("--min-speech-ms", type=int, default=150)
    ap.add_argument("--no-fallback", action="store_true",
                    help="temperature 0 only, on every pass (default: the last pass of an "
                         "utterance and passes over a buffer longer than --trim-s use the "
                         "ladder 0, 0.2 .. 1.0)")
    ap.add_argument("--all-windows", action="store_true",
                    help="let faster-whisper decode further windows after the first one of "
                         "a pass (its own behaviour; sotto decodes one)")
    ap.add_argument("--json", action="store_true", help="JSON lines on stdout")
    ap.add_argument("--verbose", "-v", action="store_true", help="log every pass on stderr")
    ap.add_argument("--offline", action="store_true",
                    help="one offline faster-whisper pass (default options, beam --beam)")
    ap.add_argument("file")
    args = ap.parse_args()

    if args.threads < 1 or args.beam < 1 or args.chunk_ms < 1:
        ap.error("--threads, --beam and --chunk-ms must be >= 1")
    if not (0.1 <= args.min_chunk <= 5.0) or not (0.1 <= args.first_chunk <= args.min_chunk):
        ap.error("--min-chunk must be 0.1 .. 5 s and --first-chunk 0.1 s .. min-chunk")
    if not (2.0 <= args.trim_s <= 20.0):
        ap.error("--trim-s must be 2 .. 20 s")
    # sotto holds these as C floats.
    args.min_chunk, args.first_chunk, args.trim_s = (
        f32(args.min_chunk), f32(args.first_chunk), f32(args.trim_s))
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.model is None:
        args.model = default_model()
    if not args.model or not os.path.isdir(args.model):
        ap.error(f"model dir {args.model!r} not found: pass --model DIR")
    if not os.path.isfile(args.file):
        ap.error(f"{args.file} not found")
    return run_offline(args) if args.offline else run_stream(args)


if __name__ == "__main__":
    sys.exit(main())
