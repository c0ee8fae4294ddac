#!/usr/bin/env python3
"""Writes tests/data/jfk_mel80.f32 (+ .json), the reference for test_mel.

An independent numpy-only implementation of Whisper's log-mel front end
(it does not import faster_whisper, so the C test is checked against a
second implementation rather than a copy):

  pcm ++ `pad` zeros -> reflect-pad 200 both sides -> frames of 400 every
  160 samples, periodic Hann window -> |rfft|^2 -> drop the last frame ->
  Slaney mel filters -> log10(max(x, 1e-10)) -> floor at max - 8 ->
  (x + 4) / 4.

Output: raw little-endian float32, layout [n_mels][n_frames], and a sidecar
JSON with the shape; likewise tests/data/short_mel80.f32 (+ .json) for a few
inputs shorter than the reflect padding.  Usage (from the repository root):

  python3 tests/engine/make_mel_fixture.py [--shared ../shared]
  python3 tests/engine/make_mel_fixture.py --check   # vs faster-whisper
"""
import argparse
import json
import os
import sys
import wave

import numpy as np

SR = 16000
N_FFT = 400
HOP = 160
SHORT_OFFSET = 5000
SHORT_CASES = [(1, 160), (2, 160), (100, 160), (199, 160), (201, 160),
               (400, 160), (160, 0), (400, 0), (1000, 0)]


def read_wav_s16_mono(path):
    with wave.open(path, "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != SR:
            sys.exit(f"{path}: expected 16 kHz mono s16")
        data = w.readframes(w.getnframes())
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)


def hz_to_mel_slaney(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mel = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz,
                    min_log_mel + np.log(np.maximum(f, 1e-30) / min_log_hz) / logstep,
                    mel)


def mel_to_hz_slaney(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel,
                    min_log_hz * np.exp(logstep * (m - min_log_mel)),
                    f_sp * m)


def mel_filters(n_mels):
    """Slaney triangular filters with area normalisation, [n_mels][201]."""
    bins = np.arange(N_FFT // 2 + 1) * (SR / N_FFT)
    top = hz_to_mel_slaney(SR / 2)  # 45.2456... for 8 kHz
    edges = mel_to_hz_slaney(np.linspace(0.0, top, n_mels + 2))
    fb = np.zeros((n_mels, bins.size))
    for i in range(n_mels):
        left, centre, right = edges[i], edges[i + 1], edges[i + 2]
        rise = (bins - left) / (centre - left)
        fall = (right - bins) / (right - centre)
        fb[i] = np.clip(np.minimum(rise, fall), 0.0, None) * (2.0 / (right - left))
    return fb.astype(np.float32)


def reflect_index(i, m):
    """numpy-style reflect (repeated for short signals) of index array i."""
    if m == 1:
        return np.zeros_like(i)
    period = 2 * (m - 1)
    r = np.mod(i, period)
    return np.where(r >= m, period - r, r)


def log_mel(pcm, n_mels=80, pad=160):
    x = np.concatenate([pcm.astype(np.float32), np.zeros(pad, np.float32)])
    m = x.size
    n_frames = m // HOP  # STFT has m // HOP + 1 frames; the last is dropped
    k = np.arange(N_FFT)
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * k / N_FFT)).astype(np.float32)
    idx = np.arange(n_frames)[:, None] * HOP - N_FFT // 2 + k[None, :]
    frames = x[reflect_index(idx, m)] * window  # [n_frames][400], float32
    spec = np.fft.rfft(frames.astype(np.float64), axis=-1)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)  # [T][201]
    mel = mel_filters(n_mels).astype(np.float64) @ power.T.astype(np.float64)
    logm = np.log10(np.maximum(mel, 1e-10))
    logm = np.maximum(logm, logm.max() - 8.0)
    return ((logm + 4.0) / 4.0).astype(np.float32)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(root, "..", "shared"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "jfk_mel80.f32"))
    ap.add_argument("--check", action="store_true",
                    help="compare with faster_whisper's FeatureExtractor")
    args = ap.parse_args()

    pcm = read_wav_s16_mono(os.path.join(args.shared, "audio", "jfk.wav"))
    mel = log_mel(pcm, 80, 160)
    if args.check:
        from faster_whisper.feature_extractor import FeatureExtractor
        for n_mels in (80, 128):
            ref = FeatureExtractor(feature_size=n_mels)(pcm)
            ours = log_mel(pcm, n_mels, 160)
            print(f"n_mels={n_mels} shape={ours.shape} vs faster-whisper "
                  f"{ref.shape}: max abs diff {np.abs(ours - ref).max():.3g}")
        for n, pad in SHORT_CASES:
            short = pcm[SHORT_OFFSET:SHORT_OFFSET + n]
            ref = FeatureExtractor()(short, padding=pad)
            ours = log_mel(short, 80, pad)
            print(f"n={n} pad={pad}: shape {ours.shape}, max abs diff "
                  f"{np.abs(ours - ref).max():.3g}")
        return
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    mel.astype("<f4").tofile(args.out)
    meta = {"source": "jfk.wav", "n_mels": int(mel.shape[0]),
            "n_frames": int(mel.shape[1]), "pad": 160,
            "dtype": "float32-le", "layout": "[n_mels][n_frames]"}
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}: {mel.shape}")

    # Short inputs, where the reflect padding wraps around more than once:
    # jfk.wav[SHORT_OFFSET:SHORT_OFFSET + n] plus `pad` zeros, 80 mels, each
    # case's [80][n_frames] block stored one after the other.
    short_out = os.path.join(os.path.dirname(args.out), "short_mel80.f32")
    cases = []
    blocks = []
    for n, pad in SHORT_CASES:
        m = log_mel(pcm[SHORT_OFFSET:SHORT_OFFSET + n], 80, pad)
        cases.append({"n": n, "pad": pad, "n_frames": int(m.shape[1])})
        blocks.append(m.astype("<f4").ravel())
    np.concatenate(blocks).tofile(short_out)
    meta = {"source": "jfk.wav", "offset": SHORT_OFFSET, "n_mels": 80,
            "dtype": "float32-le", "layout": "per case [n_mels][n_frames]",
            "cases": cases}
    with open(os.path.splitext(short_out)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"wrote {short_out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
