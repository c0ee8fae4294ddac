#!/usr/bin/env python3
"""Transcribe one file with faster-whisper: the benchmark's reference engine.

Usage:
    fw_run.py --model DIR --compute-type float32|int8 --beam-size N
              --threads N FILE

bench.py runs this as its own process per measurement, so interpreter start,
library import and model load are inside the measured wall time, just as
sotto's model load is inside its own.  The decoding options are those of the
golden data (tests/golden/make_golden.py): language "en", temperature 0.0
only (no fallback), best_of 1, timestamps on, condition_on_previous_text,
no VAD.  The segments generator is consumed completely (that is where
faster-whisper decodes).  Prints {"duration", "text", "segments": n} as JSON on
stdout; exit status 0 on success.

Set OMP_NUM_THREADS in the environment (bench.py does) so that ctranslate2's
OpenMP runtime uses the same thread count as cpu_threads.
"""

import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser(description="faster-whisper, one file, for bench.py")
    ap.add_argument("--model", required=True)
    ap.add_argument("--compute-type", default="float32")
    ap.add_argument("--beam-size", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("file")
    args = ap.parse_args()

    from faster_whisper import WhisperModel

    model = WhisperModel(args.model, device="cpu", compute_type=args.compute_type,
                         cpu_threads=args.threads, num_workers=1)
    segments, info = model.transcribe(
        args.file, language="en", task="transcribe",
        beam_size=args.beam_size, best_of=1, temperature=[0.0],
        without_timestamps=False, condition_on_previous_text=True,
        vad_filter=False, word_timestamps=False)
    segs = list(segments)
    json.dump({"duration": info.duration,
               "text": "".join(s.text for s in segs).strip(),
               "segments": len(segs)}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
