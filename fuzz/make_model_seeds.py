#!/usr/bin/env python3
"""make_model_seeds.py - writes the seed corpus of fuzz/fuzz_model.c.

Usage: python3 fuzz/make_model_seeds.py [OUTDIR]   (default fuzz/seeds/model)

The seeds are small synthetic model.bin files in CTranslate2's format
version 6 (docs/model-format.md, ../shared/reference/whisper-facts.md
section 2): a header (version, "WhisperSpec", revision 3), variable records
(uint16 name length counting the NUL, name, NUL, uint8 rank, rank x uint32
dims, uint8 dtype, uint32 byte count, payload) and an alias table.  Each
valid seed holds every variable src/engine/model.c asks for (read_dims,
load_encoder, load_decoder) with tiny dimensions, plus the alias
decoder/projection/weight -> decoder/embeddings/weight, so that
sotto__model_parse_bin() accepts it and the fuzzer starts from the far end
of the loader.  The loader insists on a vocabulary of at least 51864
tokens, so the token embedding dominates the size of a valid seed (51864 x
d x item size: 830 KB for d = 8 in float16, 104 KB for d = 1); the other
seeds are truncated or broken variants, and a few config.json texts for
the sotto__model_parse_config() half of the target.

Because the largest seed is about 850 KB, run the fuzzer with
-max_len=1000000 (libFuzzer otherwise guesses max_len from the corpus,
which also works when the seeds are in the corpus directories it is given):

  ./build-fuzz/fuzz_model -max_len=1000000 -rss_limit_mb=4096 \
      /tmp/corpus-model fuzz/seeds/model

Payloads are a fixed pseudo-random pattern, so the script always writes
the same bytes.  The whole directory stays under 5 MB.
"""
import json
import os
import struct
import sys

F32, I8, I16, I32, F16, BF16 = 0, 1, 2, 3, 4, 5
ITEM = {F32: 4, I8: 1, I16: 2, I32: 4, F16: 2, BF16: 2}
N_VOCAB_EN = 51864


def string(s):
    b = s.encode() + b"\0"
    return struct.pack("<H", len(b)) + b


def payload(count, dtype, salt):
    """count values of a fixed pattern, in dtype."""
    vals = [((i * 37 + salt * 11) % 17 - 8) / 16.0 for i in range(count)]
    if dtype == F16:
        return struct.pack("<%de" % count, *vals)
    if dtype == F32:
        return struct.pack("<%df" % count, *vals)
    if dtype == BF16:
        return b"".join(struct.pack("<f", v)[2:] for v in vals)
    if dtype == I8:
        return bytes((i * 7 + salt) & 0xFF for i in range(count))
    raise ValueError(dtype)


def record(name, dims, dtype, data=None, salt=0):
    count = 1
    for d in dims:
        count *= d
    if data is None:
        data = payload(count, dtype, salt)
    assert len(data) == count * ITEM[dtype], name
    return (string(name) + struct.pack("<B", len(dims)) +
            b"".join(struct.pack("<I", d) for d in dims) +
            struct.pack("<BI", dtype, len(data)) + data)


def scalar(name, dtype, value):
    fmt = {I8: "<b", I16: "<h", I32: "<i"}[dtype]
    return record(name, [], dtype, struct.pack(fmt, value))


def whisper_vars(d=8, heads=2, enc_layers=1, dec_layers=1, mels=80, ffn=16,
                 audio_ctx=4, text_ctx=8, vocab=N_VOCAB_EN, wdt=F16,
                 sdt=None):
    """Returns {name: (dims, dtype)} for a Whisper model: wdt for the
    matrices, sdt (default wdt) for vectors and position encodings."""
    sdt = wdt if sdt is None else sdt
    v = {}

    def attn_self(pre):
        v[pre + "/self_attention/layer_norm/gamma"] = ([d], sdt)
        v[pre + "/self_attention/layer_norm/beta"] = ([d], sdt)
        v[pre + "/self_attention/linear_0/weight"] = ([3 * d, d], wdt)
        v[pre + "/self_attention/linear_0/bias"] = ([3 * d], sdt)
        v[pre + "/self_attention/linear_1/weight"] = ([d, d], wdt)
        v[pre + "/self_attention/linear_1/bias"] = ([d], sdt)

    def ffn_block(pre):
        v[pre + "/ffn/layer_norm/gamma"] = ([d], sdt)
        v[pre + "/ffn/layer_norm/beta"] = ([d], sdt)
        v[pre + "/ffn/linear_0/weight"] = ([ffn, d], wdt)
        v[pre + "/ffn/linear_0/bias"] = ([ffn], sdt)
        v[pre + "/ffn/linear_1/weight"] = ([d, ffn], wdt)
        v[pre + "/ffn/linear_1/bias"] = ([d], sdt)

    v["encoder/conv1/weight"] = ([d, mels, 3], wdt)
    v["encoder/conv1/bias"] = ([d], sdt)
    v["encoder/conv2/weight"] = ([d, d, 3], wdt)
    v["encoder/conv2/bias"] = ([d], sdt)
    v["encoder/position_encodings/encodings"] = ([audio_ctx, d], sdt)
    for i in range(enc_layers):
        attn_self("encoder/layer_%d" % i)
        ffn_block("encoder/layer_%d" % i)
    v["encoder/layer_norm/gamma"] = ([d], sdt)
    v["encoder/layer_norm/beta"] = ([d], sdt)
    v["encoder/num_heads"] = ("scalar", I16, heads)

    v["decoder/embeddings/weight"] = ([vocab, d], wdt)
    v["decoder/position_encodings/encodings"] = ([text_ctx, d], sdt)
    for i in range(dec_layers):
        pre = "decoder/layer_%d" % i
        attn_self(pre)
        v[pre + "/attention/layer_norm/gamma"] = ([d], sdt)
        v[pre + "/attention/layer_norm/beta"] = ([d], sdt)
        v[pre + "/attention/linear_0/weight"] = ([d, d], wdt)
        v[pre + "/attention/linear_0/bias"] = ([d], sdt)
        v[pre + "/attention/linear_1/weight"] = ([2 * d, d], wdt)
        v[pre + "/attention/linear_1/bias"] = ([2 * d], sdt)
        v[pre + "/attention/linear_2/weight"] = ([d, d], wdt)
        v[pre + "/attention/linear_2/bias"] = ([d], sdt)
        ffn_block(pre)
    v["decoder/layer_norm/gamma"] = ([d], sdt)
    v["decoder/layer_norm/beta"] = ([d], sdt)
    v["decoder/num_heads"] = ("scalar", I16, heads)
    # Scalars CTranslate2 writes that sotto does not read.
    v["decoder/activation"] = ("scalar", I8, 3)
    v["decoder/alibi"] = ("scalar", I8, 0)
    v["decoder/alignment_heads"] = ("scalar", I16, 1)
    v["decoder/alignment_layer"] = ("scalar", I16, -1)
    v["decoder/pre_norm"] = ("scalar", I8, 1)
    v["decoder/scale_embeddings"] = ("scalar", I8, 0)
    v["decoder/start_from_zero_embedding"] = ("scalar", I8, 0)
    return v


def model_bin(variables, order="ct2", aliases=None, version=6,
              spec="WhisperSpec", revision=3, override=None):
    """Serialises variables.  order "ct2" is CTranslate2's alphabetical
    order (the embedding comes first); "emb_last" puts the token embedding
    last, so that most of the structure sits in the first few KB where the
    fuzzer's mutations are useful.  override maps a name to raw record
    bytes."""
    names = sorted(variables)
    if order == "emb_last":
        names.remove("decoder/embeddings/weight")
        names.append("decoder/embeddings/weight")
    if aliases is None:
        aliases = [("decoder/projection/weight", "decoder/embeddings/weight")]
    out = [struct.pack("<I", version), string(spec),
           struct.pack("<II", revision, len(names))]
    for salt, name in enumerate(names):
        if override and name in override:
            out.append(override[name])
            continue
        spec_ = variables[name]
        if spec_[0] == "scalar":
            out.append(scalar(name, spec_[1], spec_[2]))
        else:
            out.append(record(name, spec_[0], spec_[1], salt=salt))
    out.append(struct.pack("<I", len(aliases)))
    for a, t in aliases:
        out.append(string(a) + string(t))
    return b"".join(out)


def offset_of_payload(blob, name):
    """Offset of the payload of record `name` in blob."""
    key = string(name)
    i = blob.index(key) + len(key)
    rank = blob[i]
    return i + 1 + 4 * rank + 1 + 4


TINY_SUPPRESS = [
    1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90,
    91, 92, 93, 357, 366, 438, 532, 685, 705, 796, 930, 1058, 1220, 1267,
    1279, 1303, 1343, 1377, 1391, 1635, 1782, 1875, 2162, 2361, 2488, 3467,
    4008, 4211, 4600, 4808, 5299, 5855, 6329, 7203, 9609, 9959, 10563, 10786,
    11420, 11709, 11907, 13163, 13697, 13700, 14808, 15306, 16410, 16791,
    17992, 19203, 19510, 20724, 22305, 22935, 27007, 30109, 30420, 33409,
    34949, 40283, 40493, 40549, 47282, 49146, 50257, 50357, 50358, 50359,
    50360, 50361]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "seeds",
                                                             "model")
    os.makedirs(out, exist_ok=True)
    seeds = {}

    # 1. CTranslate2 order, float16, d=8, 2 heads, 1+1 layers (830 KB).
    v8 = whisper_vars()
    seeds["valid_ct2_f16_d8.bin"] = model_bin(v8)

    # 2. Embedding last, float16 matrices with float32 vectors, d=2, 2
    #    heads, 2+2 layers, 128 mels (the large-v3 front end).
    v2 = whisper_vars(d=2, heads=2, enc_layers=2, dec_layers=2, mels=128,
                      ffn=8, audio_ctx=3, wdt=F16, sdt=F32)
    full2 = model_bin(v2, order="emb_last")
    seeds["valid_mixed_d2_2x2_mels128.bin"] = full2
    # ... cut where the embedding payload starts: small, and it exercises
    #     every record but the last.
    seeds["trunc_at_embedding.bin"] = full2[:offset_of_payload(
        full2, "decoder/embeddings/weight")]

    # 3. float32 everywhere, d=1, one head, a multilingual-sized vocabulary.
    v1f = whisper_vars(d=1, heads=1, ffn=4, audio_ctx=1, vocab=51865,
                       wdt=F32)
    seeds["valid_f32_d1_vocab51865.bin"] = model_bin(v1f, order="emb_last")

    # 4. Broken variants on a d=1 float16 model (104 KB each).
    v1 = whisper_vars(d=1, heads=1, ffn=4, audio_ctx=1)
    # int8 weights with CTranslate2's per-row scales: SOTTO_EUNSUPPORTED.
    v1q = dict(v1)
    for name in list(v1q):
        if name.endswith("/weight") and name.startswith("encoder/layer_"):
            v1q[name] = (v1q[name][0], I8)
            v1q[name[:-len("weight")] + "weight_scale"] = (
                [v1q[name][0][0]], F32)
    seeds["int8_encoder_d1.bin"] = model_bin(v1q, order="emb_last")
    # An untied output projection (a real variable, not an alias).
    v1u = dict(v1)
    v1u["decoder/projection/weight"] = ([N_VOCAB_EN, 1], F16)
    seeds["untied_projection_d1.bin"] = model_bin(v1u, order="emb_last",
                                                  aliases=[])
    # Two decoder layers but the first cross-attention K/V has the
    # wrong shape (d x d instead of 2d x d).
    v1s = whisper_vars(d=1, heads=1, ffn=4, audio_ctx=1, dec_layers=2)
    v1s["decoder/layer_1/attention/linear_1/weight"] = ([1, 1], F16)
    seeds["bad_shape_d1.bin"] = model_bin(v1s, order="emb_last")

    # Small files that still reach the checks after the record loop: a
    # 16-token vocabulary fails read_dims() at the vocabulary size (3 KB;
    # mutations of its shapes reach the other read_dims() checks), and an
    # int8 embedding (1 byte per item, 52 KB) passes read_dims() and
    # load_encoder() and fails at the embedding's dtype.
    seeds["small_vocab_d8.bin"] = model_bin(whisper_vars(vocab=16),
                                            order="emb_last")
    v1e = dict(v1)
    v1e["decoder/embeddings/weight"] = ([N_VOCAB_EN, 1], I8)
    seeds["int8_embedding_d1.bin"] = model_bin(v1e, order="emb_last")

    # The loader's bounds (docs/limits.md), each just past its limit, and
    # the layer limit at and past it; tests/engine/test_model.c expects
    # these exact outcomes from them.
    seeds["limit_text_ctx7_d1.bin"] = model_bin(
        whisper_vars(d=1, heads=1, ffn=4, audio_ctx=1, text_ctx=7),
        order="emb_last")
    seeds["limit_audio_ctx65537_d1.bin"] = model_bin(
        whisper_vars(d=1, heads=1, ffn=4, audio_ctx=65537), order="emb_last")
    seeds["limit_ffn65537_d1.bin"] = model_bin(
        whisper_vars(d=1, heads=1, ffn=65537, audio_ctx=1), order="emb_last")
    seeds["limit_vocab262145_d1.bin"] = model_bin(
        whisper_vars(d=1, heads=1, ffn=4, audio_ctx=1, vocab=262145),
        order="emb_last")
    seeds["limit_layers128_d1.bin"] = model_bin(
        whisper_vars(d=1, heads=1, ffn=4, audio_ctx=1, dec_layers=128),
        order="emb_last")
    seeds["limit_layers129_d1.bin"] = model_bin(
        whisper_vars(d=1, heads=1, ffn=4, audio_ctx=1, dec_layers=129),
        order="emb_last")

    # 5. Headers and short files.
    seeds["header_only.bin"] = seeds["valid_ct2_f16_d8.bin"][:200]
    seeds["version5.bin"] = model_bin({"encoder/num_heads": ("scalar", I16, 6)},
                                      version=5, aliases=[])
    seeds["revision4.bin"] = model_bin(
        {"encoder/num_heads": ("scalar", I16, 6)}, revision=4, aliases=[])
    seeds["transformer_spec.bin"] = model_bin(
        {"encoder/num_heads": ("scalar", I16, 6)}, spec="TransformerSpec",
        aliases=[("a", "encoder/num_heads")])

    # 6. config.json texts (the target feeds inputs starting with '{' to
    #    sotto__model_parse_config with 4 text layers, 6 heads, vocab 51864).
    seeds["config_tiny_en.json"] = json.dumps({
        "alignment_heads": [[1, 0], [2, 0], [2, 5], [3, 0], [3, 1], [3, 2],
                            [3, 3], [3, 4]],
        "lang_ids": list(range(50259, 50357)),
        "suppress_ids": TINY_SUPPRESS,
        "suppress_ids_begin": [220, 50256],
    }).encode()
    seeds["config_defaults.json"] = json.dumps({
        "suppress_ids": [-1], "suppress_ids_begin": [220, 50256],
        "layer_norm_epsilon": 1e-5}).encode()
    seeds["config_bad.json"] = (b'{"alignment_heads": [[4, 0], [0, 6.5]], '
                                b'"suppress_ids": [51864, 1e300, "x"], '
                                b'"suppress_ids_begin": {}}')

    # Found by the fuzzer: a number beyond long's range (the cast in
    # json_int() was undefined behaviour).
    seeds["config_huge_number.json"] = (
        b'{"alignment_heads": [[1, 0], [2, 0], [' + b"2" + b"4" * 87 +
        b', 5], [3, 06], [3, 1],6]}')

    for name in sorted(os.listdir(out)):
        if name not in seeds and name != "README.md":
            os.remove(os.path.join(out, name))
    total = 0
    for name, blob in sorted(seeds.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(blob)
        total += len(blob)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(
            "Seeds of fuzz/fuzz_model.c, written by fuzz/make_model_seeds.py "
            "(run it to regenerate;\nit rewrites every file here).  The "
            "largest seed is about 850 KB, so run the fuzzer\nwith "
            "-max_len=1000000:\n\n"
            "    ./build-fuzz/fuzz_model -max_len=1000000 -rss_limit_mb=4096 "
            "\\\n        /tmp/corpus-model fuzz/seeds/model\n\n"
            "(`make fuzz` gives no -max_len; libFuzzer then takes the size "
            "of the largest\ninput in the corpus, which also covers these "
            "seeds.)\n")
    print("wrote %d seeds, %d bytes, to %s" % (len(seeds), total, out))


if __name__ == "__main__":
    main()
