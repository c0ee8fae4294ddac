#!/usr/bin/env python3
"""make_f32_model.py SRC_DIR DST_DIR - write a float32 copy of a float16
CTranslate2 Whisper model folder, as `ct2-transformers-converter
--quantization float32` would lay it out.

Used by the end-to-end tests to check that sotto reads float32 models and
gives the same tokens as from the float16 file (widening float16 to float32
is exact, so the two must agree).  Standard library only: struct's 'e'
format reads IEEE half floats.
"""
import os
import shutil
import struct
import sys

F32, F16 = 0, 4


def read_string(buf, off):
    (n,) = struct.unpack_from("<H", buf, off)
    return buf[off + 2:off + 2 + n], off + 2 + n


def convert(src, dst):
    buf = open(os.path.join(src, "model.bin"), "rb").read()
    out = bytearray()
    off = 0
    version, = struct.unpack_from("<I", buf, off)
    off += 4
    out += struct.pack("<I", version)
    name, off2 = read_string(buf, off)
    out += buf[off:off2]
    off = off2
    out += buf[off:off + 8]                      # revision, variable count
    _, count = struct.unpack_from("<II", buf, off)
    off += 8
    for _ in range(count):
        name, off2 = read_string(buf, off)
        out += buf[off:off2]
        off = off2
        rank = buf[off]
        dims = struct.unpack_from("<%dI" % rank, buf, off + 1)
        out += buf[off:off + 1 + 4 * rank]
        off += 1 + 4 * rank
        dtype = buf[off]
        (nbytes,) = struct.unpack_from("<I", buf, off + 1)
        payload = buf[off + 5:off + 5 + nbytes]
        off += 5 + nbytes
        if dtype == F16 and rank > 0:
            n = nbytes // 2
            values = struct.unpack("<%de" % n, payload)
            payload = struct.pack("<%df" % n, *values)
            dtype = F32
        out += bytes([dtype]) + struct.pack("<I", len(payload)) + payload
    out += buf[off:]                             # alias table
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(dst, "model.bin"), "wb") as f:
        f.write(out)
    for extra in ("config.json", "tokenizer.json", "vocabulary.txt",
                  "vocabulary.json"):
        p = os.path.join(src, extra)
        if os.path.exists(p):
            shutil.copy(p, dst)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert(sys.argv[1], sys.argv[2])
