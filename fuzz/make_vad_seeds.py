#!/usr/bin/env python3
"""make_vad_seeds.py - writes the seed corpus of fuzz/fuzz_vad.c.

Usage: python3 fuzz/make_vad_seeds.py [--shared DIR] [OUTDIR]
       (defaults ../shared and fuzz/seeds/vad; it rewrites every file there)

Seeds:
  silero_vad_16k.safetensors  the real weights (copied from
                              DIR/models/silero-vad), which load and run;
  header_only.safetensors     its length and JSON header without the data;
  wrong_shapes.safetensors    every expected name, F32, one element each;
  f16_dtype.safetensors       every expected name as F16, one element each;
  missing_tensor.safetensors  the real header less one entry, small data;
  bad_offsets.safetensors     offsets past the end of the data;
  metadata_only.safetensors   only a __metadata__ entry;
  not_json.safetensors        a header that is not JSON;
  huge_header.safetensors     a header length of 2^40 bytes;
  segments.bin                bytes for the segmentation half of the target.
All but the first are under 2 KB.
"""
import argparse
import hashlib
import json
import os
import shutil
import struct

WEIGHTS_SHA256 = "c59271c284ae9c8335d795d60e0bfdb71aaaceec578d9bd9ffc1b8153c319ea1"
NAMES = ["stft_conv.weight", "conv1.weight", "conv1.bias", "conv2.weight",
         "conv2.bias", "conv3.weight", "conv3.bias", "conv4.weight",
         "conv4.bias", "lstm_cell.weight_ih", "lstm_cell.weight_hh",
         "lstm_cell.bias_ih", "lstm_cell.bias_hh", "final_conv.weight",
         "final_conv.bias"]


def pack(header, data=b""):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def small(dtype, size):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name in NAMES:
        header[name] = {"dtype": dtype, "shape": [1], "data_offsets": [off, off + size]}
        off += size
    return pack(header, bytes(range(off)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("SOTTO_SHARED", "../shared"))
    ap.add_argument("out", nargs="?", default="fuzz/seeds/vad")
    args = ap.parse_args()
    real_path = os.path.join(args.shared, "models/silero-vad/silero_vad_16k.safetensors")
    real = open(real_path, "rb").read()
    assert hashlib.sha256(real).hexdigest() == WEIGHTS_SHA256, real_path
    hlen = struct.unpack("<Q", real[:8])[0]
    header = json.loads(real[8:8 + hlen])

    os.makedirs(args.out, exist_ok=True)
    for f in os.listdir(args.out):
        if f.endswith((".safetensors", ".bin")):
            os.remove(os.path.join(args.out, f))

    def write(name, data):
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(data)

    shutil.copyfile(real_path, os.path.join(args.out, "silero_vad_16k.safetensors"))
    write("header_only.safetensors", real[:8 + hlen])
    write("wrong_shapes.safetensors", small("F32", 4))
    write("f16_dtype.safetensors", small("F16", 2))
    partial = {k: v for k, v in header.items() if k != "conv3.bias"}
    for v in partial.values():
        v["data_offsets"] = [0, 0]
        v["shape"] = [0] + v["shape"][1:]
    write("missing_tensor.safetensors", pack(partial, b"\0" * 16))
    write("bad_offsets.safetensors",
          pack({"conv1.bias": {"dtype": "F32", "shape": [128],
                               "data_offsets": [0, 512]}}, b"\0" * 100))
    write("metadata_only.safetensors", pack({"__metadata__": {"a": "b"}}))
    write("not_json.safetensors", struct.pack("<Q", 16) + b"{\"a\":[1,2,}     ")
    write("huge_header.safetensors", struct.pack("<Q", 1 << 40) + b"{}")
    # Options (threshold 0.5, default neg, pads, 2 s limit) then a track.
    opts = bytes([128, 0, 10, 0xf4, 0x01, 50, 144, 100]) + bytes(8)
    track = bytes((230 if (i // 40) % 3 else 20) for i in range(400))
    write("segments.bin", opts + track)


if __name__ == "__main__":
    main()
