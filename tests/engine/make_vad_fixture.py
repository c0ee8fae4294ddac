#!/usr/bin/env python3
"""make_vad_fixture.py - reference probabilities and speech segments for
tests/engine/test_vad.c (the Silero VAD in src/engine/vad.c).

Usage: python3 tests/engine/make_vad_fixture.py [--shared DIR] [--out DIR]
       (defaults ../shared and tests/data; run from the repository root)

Needs, from PyPI: silero-vad==6.2.1 installed WITHOUT its torch dependency
(pip install --no-deps silero-vad==6.2.1), tinygrad, numpy and
faster-whisper==1.2.1; onnxruntime optionally, for an informative
comparison only.

The reference network
---------------------
The file sotto loads, silero_vad/data/silero_vad_16k.safetensors, is run by
the package's own reference for it, silero_vad/tinygrad_model.py
(TinySileroVAD), exactly as its docstring shows: 512-sample frames in order,
each with the previous 64 samples of context (zeros before the first), the
LSTM state carried over, the last frame zero-padded.  The script also runs
an independent float64 numpy version of the same network (written here from
the architecture, not from that file) and requires both to agree to 1e-5,
so a broken tinygrad install cannot produce a wrong fixture.

The ONNX models in the same wheel (silero_vad.onnx and friends) are NOT a
reference for this file: their weights are a different checkpoint (only
the STFT basis is equal) and their probabilities differ by up to about 0.4
on these recordings; upstream tracks this as snakers4/silero-vad#768.  When
onnxruntime is installed the script prints that difference for information.

Segments
--------
faster-whisper's get_speech_timestamps (faster_whisper/vad.py) runs
unmodified; only its network is replaced by TinySileroVAD through a stand-in
for the onnxruntime session, so faster-whisper's own batching (512 - n % 512
padding zeros, the 64-sample contexts, and the zeroed tail of the last frame
that its in-place context trick causes) is what the fixture records.  Cases
on synthetic probability sequences then exercise the rest of its logic
(max_speech_duration_s splitting, neg_threshold, min_speech) directly.

Outputs (all text, about 40 KB):
  vad_<name>.txt      one probability per line (6 decimals), streaming frames
  vad_segments.txt    sources, their probabilities, option sets, segments:
      audio FILE N_SAMPLES N_FRAMES | probs NAME N_SAMPLES N_FRAMES
      p P0 P1 ...                      (the probabilities segmentation saw)
      case THRESHOLD NEG MIN_SPEECH_MS MIN_SILENCE_MS PAD_MS MAX_SPEECH_S
      seg START END                    (samples, end exclusive; 0 or more)
      end
  NEG -1 means faster-whisper's default; MAX_SPEECH_S 0 means no limit.
"""
import argparse
import hashlib
import importlib.metadata
import importlib.util
import os
import sys
import wave

import numpy as np

PINNED_VERSION = "6.2.1"
WEIGHTS_SHA256 = "c59271c284ae9c8335d795d60e0bfdb71aaaceec578d9bd9ffc1b8153c319ea1"
WEIGHTS_SIZE = 1239748

# The three recordings of the per-frame fixtures, and one more for the
# segments whose length leaves 475 samples in the last frame (more than
# 448, so faster-whisper's zeroing of the last 64 samples matters).
PROB_FILES = {
    "jfk": "jfk.wav",
    "goforward": "pocketsphinx-goforward.wav",
    "librispeech": "librispeech-test-clean-1089-134686-0000.wav",
}
SEG_FILES = ["jfk.wav", "pocketsphinx-goforward.wav",
             "librispeech-test-clean-1089-134686-0000.wav",
             "ljspeech-LJ002-0035.wav"]

# (threshold, neg_threshold or None, min_speech_ms, min_silence_ms,
#  speech_pad_ms, max_speech_s or None)
DEFAULT = (0.5, None, 0, 2000, 400, None)
AUDIO_OPTIONS = [DEFAULT, (0.5, None, 0, 500, 200, None)]
SYNTH_OPTIONS = [
    DEFAULT,
    (0.5, None, 0, 500, 200, None),
    (0.5, None, 250, 300, 100, None),
    (0.5, None, 0, 500, 200, 5.0),
    (0.6, 0.45, 0, 100, 30, 3.0),
    (0.5, None, 0, 0, 0, 2.0),
    (0.3, None, 100, 1000, 0, 8.5),
    (0.9, None, 0, 200, 400, None),
]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_wav(path):
    """16 kHz mono 16-bit PCM as float32 / 32768 (what libsndfile gives)."""
    with wave.open(path) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 \
            and w.getsampwidth() == 2, path
        data = w.readframes(w.getnframes())
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


def package_dir():
    """The installed silero_vad folder, found without importing it (its
    __init__ imports torch, which this script does not need)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("silero_vad is not installed: pip install --no-deps "
                 f"silero-vad=={PINNED_VERSION}")
    return list(spec.submodule_search_locations)[0]


class Reference:
    """TinySileroVAD from the installed package, one jitted step."""

    def __init__(self, pkg, weights):
        from tinygrad import Tensor, TinyJit
        from tinygrad.nn.state import load_state_dict, safe_load

        spec = importlib.util.spec_from_file_location(
            "silero_tinygrad", os.path.join(pkg, "tinygrad_model.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        self.model = mod.TinySileroVAD()
        load_state_dict(self.model, safe_load(weights), verbose=False)
        self.Tensor = Tensor

        @TinyJit
        def step(x, state):
            out, new_state = self.model(x, state)
            return out.realize(), new_state.realize()

        self.step = step

    def run_rows(self, rows):
        """rows: [N, 576] (context + frame) from a fresh state."""
        state = self.Tensor.zeros(2, 1, 128).contiguous().realize()
        out = np.empty(len(rows), np.float32)
        for i, row in enumerate(rows):
            p, s = self.step(self.Tensor(np.ascontiguousarray(row[None], np.float32)), state)
            state = self.Tensor(s.numpy())
            out[i] = p.numpy().reshape(-1)[0]
        return out


def stream_rows(audio):
    """Frames as a stream sees them: zero-padded to a multiple of 512, each
    row the previous 64 samples (zeros first) and the 512 new ones."""
    a = np.pad(audio, (64, (-len(audio)) % 512)).astype(np.float32)
    return np.stack([a[i - 64:i + 512] for i in range(64, len(a), 512)])


def numpy_network(weights_path):
    """An independent float64 forward pass of the same architecture."""
    import json
    import struct
    raw = open(weights_path, "rb").read()
    hlen = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + hlen])
    w = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        w[name] = np.frombuffer(raw[8 + hlen + b:8 + hlen + e], "<f4") \
            .reshape(t["shape"]).astype(np.float64)

    def conv(x, wt, bias, stride, pad):          # x [C, T], wt [O, C, K]
        x = np.pad(x, ((0, 0), (pad, pad)))
        k = wt.shape[2]
        n = (x.shape[1] - k) // stride + 1
        cols = np.stack([x[:, t * stride:t * stride + k] for t in range(n)])
        y = np.einsum("ock,tck->ot", wt, cols)
        return y if bias is None else y + bias[:, None]

    def sig(z):
        return 1.0 / (1.0 + np.exp(-z))

    def run_rows(rows):
        h = np.zeros(128)
        c = np.zeros(128)
        out = []
        for row in rows.astype(np.float64):
            x = np.concatenate([row, row[-2:-66:-1]])   # reflect, no edge
            s = conv(x[None], w["stft_conv.weight"], None, 128, 0)
            y = np.sqrt(s[:129] ** 2 + s[129:] ** 2)
            for i, st in zip(range(1, 5), (1, 2, 2, 1)):
                y = np.maximum(conv(y, w[f"conv{i}.weight"], w[f"conv{i}.bias"], st, 1), 0)
            g = (w["lstm_cell.weight_ih"] @ y[:, 0] + w["lstm_cell.bias_ih"]
                 + w["lstm_cell.weight_hh"] @ h + w["lstm_cell.bias_hh"])
            c = sig(g[128:256]) * c + sig(g[:128]) * np.tanh(g[256:384])
            h = sig(g[384:]) * np.tanh(c)
            z = w["final_conv.weight"][0, :, 0] @ np.maximum(h, 0) + w["final_conv.bias"][0]
            out.append(sig(z))
        return np.array(out)

    return run_rows


class FakeSession:
    """Stands in for faster-whisper's onnxruntime session: takes its batched
    [N, 576] rows and returns the reference network's probabilities."""

    def __init__(self, ref):
        self.ref = ref

    def run(self, _names, feeds):
        p = self.ref.run_rows(feeds["input"])
        return p.reshape(-1, 1), feeds["h"], feeds["c"]


def vad_options(opt):
    from faster_whisper.vad import VadOptions
    th, neg, min_speech, min_sil, pad, max_speech = opt
    kw = dict(threshold=th, min_speech_duration_ms=min_speech,
              min_silence_duration_ms=min_sil, speech_pad_ms=pad)
    if neg is not None:
        kw["neg_threshold"] = neg
    if max_speech is not None:
        kw["max_speech_duration_s"] = max_speech
    return VadOptions(**kw)


def case_line(opt):
    th, neg, min_speech, min_sil, pad, max_speech = opt
    return "case %g %g %d %d %d %g" % (th, -1 if neg is None else neg, min_speech,
                                       min_sil, pad, 0 if max_speech is None else max_speech)


def synth_probs(rng, n_frames, style):
    """A probability track: blocks of speech and silence with noise, dips,
    and values exactly on the default thresholds."""
    p = np.empty(n_frames)
    i = 0
    speech = False
    while i < n_frames:
        if style == "long":
            n = int(rng.integers(60, 400)) if speech else int(rng.integers(1, 12))
        else:
            n = int(rng.integers(2, 190))
        lo, hi = (0.55, 1.0) if speech else (0.0, 0.45)
        p[i:i + n] = rng.uniform(lo, hi, size=min(n, n_frames - i))
        i += n
        speech = not speech
    # Hesitant frames between the two thresholds, and exact threshold hits.
    idx = rng.choice(n_frames, size=n_frames // 15, replace=False)
    p[idx] = rng.uniform(0.3, 0.55, size=len(idx))
    p[rng.choice(n_frames, size=5, replace=False)] = 0.5
    p[rng.choice(n_frames, size=5, replace=False)] = 0.35
    # Round to the 6 decimals the fixture stores, then to float32, so C
    # reads exactly what faster-whisper saw.
    return np.array([np.float32(float("%.6f" % v)) for v in p], np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("SOTTO_SHARED", "../shared"))
    ap.add_argument("--out", default="tests/data")
    args = ap.parse_args()

    import faster_whisper
    import faster_whisper.vad as fwvad

    weights = os.path.join(args.shared, "models/silero-vad/silero_vad_16k.safetensors")
    pkg = package_dir()
    version = importlib.metadata.version("silero-vad")
    if version != PINNED_VERSION:
        sys.exit(f"silero-vad {version} is installed; the fixture is made with "
                 f"{PINNED_VERSION} (pip install --no-deps silero-vad=={PINNED_VERSION})")
    pkg_weights = os.path.join(pkg, "data", "silero_vad_16k.safetensors")
    for path in (weights, pkg_weights):
        digest = sha256(path)
        print(f"{path}: {os.path.getsize(path)} bytes, sha256 {digest}")
        assert digest == WEIGHTS_SHA256 and os.path.getsize(path) == WEIGHTS_SIZE, \
            f"{path} is not the pinned Silero VAD weights file"
    print(f"silero-vad {version}, faster-whisper {faster_whisper.__version__}")

    ref = Reference(pkg, weights)
    independent = numpy_network(weights)
    os.makedirs(args.out, exist_ok=True)

    onnx = None
    try:
        import onnxruntime
        onnx = onnxruntime.InferenceSession(os.path.join(pkg, "data", "silero_vad.onnx"),
                                            providers=["CPUExecutionProvider"])
    except ImportError:
        pass

    for name, fname in PROB_FILES.items():
        audio = read_wav(os.path.join(args.shared, "audio", fname))
        rows = stream_rows(audio)
        p = ref.run_rows(rows)
        d = np.abs(independent(rows) - p).max()
        print(f"{fname}: {len(audio)} samples, {len(p)} frames; "
              f"tinygrad vs independent numpy: max |diff| {d:.2e}")
        assert d < 1e-5, "the reference and the numpy network disagree"
        if onnx is not None:
            state = np.zeros((2, 1, 128), np.float32)
            q = []
            for row in rows:
                o, state = onnx.run(None, {"input": row[None], "state": state,
                                           "sr": np.array(16000, np.int64)})
                q.append(float(o.reshape(-1)[0]))
            print(f"  (for information: silero_vad.onnx of the same wheel differs "
                  f"by up to {np.abs(np.array(q) - p).max():.3f}; see the docstring)")
        with open(os.path.join(args.out, f"vad_{name}.txt"), "w") as f:
            f.write(f"# Silero VAD probabilities for {fname} ({len(audio)} samples, "
                    f"{len(p)} frames of 512, the last zero-padded, 64 samples of\n"
                    f"# context carried), from silero-vad {version}'s "
                    f"tinygrad_model.py on silero_vad_16k.safetensors.\n"
                    f"# Written by tests/engine/make_vad_fixture.py.\n")
            for v in p:
                f.write("%.6f\n" % v)

    out = ["# Speech segments from faster-whisper %s get_speech_timestamps with the"
           % faster_whisper.__version__,
           "# Silero network of silero_vad_16k.safetensors (silero-vad %s)." % version,
           "# Written by tests/engine/make_vad_fixture.py; its docstring gives the format."]
    # faster-whisper's model object with the reference network inside; its
    # own __call__ does the padding and batching.
    fw_model = object.__new__(fwvad.SileroVADModel)
    fw_model.session = FakeSession(ref)
    seen = {}

    def reference_model(padded):
        seen["probs"] = fw_model(padded).reshape(-1)
        return seen["probs"]

    def model_returning(probs):
        def call(padded):
            assert len(padded) // 512 == len(probs)
            return probs
        return call

    for fname in SEG_FILES:
        audio = read_wav(os.path.join(args.shared, "audio", fname))
        fwvad.get_vad_model = lambda: reference_model
        segs = [fwvad.get_speech_timestamps(audio, vad_options(o)) for o in AUDIO_OPTIONS]
        probs = seen["probs"]
        out.append("audio %s %d %d" % (fname, len(audio), len(probs)))
        out.append("p " + " ".join("%.6f" % v for v in probs))
        for o, s in zip(AUDIO_OPTIONS, segs):
            out.append(case_line(o))
            out += ["seg %d %d" % (x["start"], x["end"]) for x in s]
            out.append("end")
        print(f"{fname}: segments {[(x['start'], x['end']) for x in segs[0]]} (defaults)")

    rng = np.random.default_rng(20251123)
    synth = [("blocks", 300001, "blocks"), ("long", 777777, "long"),
             ("silence", 20000, None), ("speech", 100000, None)]
    for name, n, style in synth:
        nf = n // 512 + 1
        if style is None:
            probs = np.full(nf, 0.01 if name == "silence" else 0.97, np.float32)
        else:
            probs = synth_probs(rng, nf, style)
        fwvad.get_vad_model = lambda: model_returning(probs)
        out.append("probs %s %d %d" % (name, n, nf))
        out.append("p " + " ".join("%.6f" % v for v in probs))
        for o in SYNTH_OPTIONS:
            s = fwvad.get_speech_timestamps(np.zeros(n, np.float32), vad_options(o))
            out.append(case_line(o))
            out += ["seg %d %d" % (x["start"], x["end"]) for x in s]
            out.append("end")
            print(f"{name} {case_line(o)}: {len(s)} segments")
    with open(os.path.join(args.out, "vad_segments.txt"), "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
