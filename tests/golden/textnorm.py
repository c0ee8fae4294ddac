"""Text normalization and word error rate for sotto's golden checks.

Stdlib only; imported by check_golden.py (and usable by anything else that
scores transcripts).  The same ``normalize`` is applied to hypotheses and to
references, human or machine, so that only word choice counts.

normalize(text) does, in order:
  1. Unicode NFKC; typographic apostrophes (U+2018, U+2019, U+02BC) become "'".
  2. Lowercase.
  3. Hyphens and dashes (-, U+2010..U+2015, U+2212) become spaces:
     "cold-hearted" -> "cold hearted", the way the human references spell it.
  4. A comma between two digits is dropped ("1,000" -> "1000"); a period
     between two digits is kept ("3.5").
  5. An apostrophe is kept only between two letters/digits ("don't",
     "o'clock"); leading/trailing/quote apostrophes are dropped
     ("'tis" -> "tis", "dogs'" -> "dogs").
  6. Every other character that is not a letter, digit or apostrophe becomes a
     space (punctuation, symbols, quotes, brackets).
  7. Runs of whitespace collapse to one space; leading/trailing space goes.

Deliberately NOT done (keep it simple and predictable): numbers are not
spelled out or parsed ("10" and "ten" differ), abbreviations are not
expanded ("mr" and "mister" differ), British/American spellings are not
unified, and filler words are not removed.  Such differences count as errors
for every engine alike, so comparisons between engines stay fair.

wer(ref, hyp) is the word-level Levenshtein distance (substitutions,
deletions and insertions, each cost 1) divided by the number of reference
words, after normalizing both.  For a corpus WER, sum ``word_errors`` and
the reference word counts over files and divide once.
"""

import re
import unicodedata

__all__ = ["normalize", "words", "edit_distance", "word_errors", "wer"]

_APOSTROPHES = {"\u2018": "'", "\u2019": "'", "\u02bc": "'"}
_DASHES_RE = re.compile("[-\u2010\u2011\u2012\u2013\u2014\u2015\u2212]")
_DIGIT_COMMA_RE = re.compile(r"(?<=\d),(?=\d)")
_DIGIT_PERIOD_RE = re.compile(r"(?<=\d)\.(?=\d)")
_INWORD_APOS_RE = re.compile(r"(?<=[^\W_])'(?=[^\W_])")
_KEEP = "\x00"  # placeholder for a period that must survive step 6
_NOT_WORD_RE = re.compile(r"[^\w'\x00]|_")
_SPACES_RE = re.compile(r"\s+")


def normalize(text):
    """Return ``text`` normalized for scoring (see the module docstring)."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text)
    for a, b in _APOSTROPHES.items():
        text = text.replace(a, b)
    text = text.lower()
    text = _DASHES_RE.sub(" ", text)
    text = _DIGIT_COMMA_RE.sub("", text)
    text = _DIGIT_PERIOD_RE.sub(_KEEP, text)
    text = _INWORD_APOS_RE.sub("\x01", text)  # protect in-word apostrophes
    text = text.replace("'", " ").replace("\x01", "'")
    text = _NOT_WORD_RE.sub(" ", text)
    text = text.replace(_KEEP, ".")
    return _SPACES_RE.sub(" ", text).strip()


def words(text):
    """The normalized words of ``text``."""
    t = normalize(text)
    return t.split(" ") if t else []


def edit_distance(ref, hyp):
    """Levenshtein distance between two sequences (unit costs)."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref  # distance is symmetric; keep the row short
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1,              # deletion
                           cur[j - 1] + 1,           # insertion
                           prev[j - 1] + (r != h)))  # substitution / match
        prev = cur
    return prev[-1]


def word_errors(ref, hyp):
    """(errors, reference word count) for two raw (unnormalized) texts."""
    rw, hw = words(ref), words(hyp)
    return edit_distance(rw, hw), len(rw)


def wer(ref, hyp):
    """Word error rate of ``hyp`` against ``ref`` as a fraction (0.0 = equal).

    An empty reference gives 0.0 for an empty hypothesis, else 1.0 per
    inserted word (reported as the insertion count).
    """
    errors, n = word_errors(ref, hyp)
    if n == 0:
        return float(errors)
    return errors / n


if __name__ == "__main__":
    import sys
    for line in sys.stdin:
        print(normalize(line))
