/*
 * tokenizer.h - Whisper's byte-level BPE tokenizer (internal).
 *
 * The vocabulary comes from tokenizer.json (HF "tokenizers" format, which
 * also carries the BPE merges needed to encode text) or, when that file is
 * absent, from vocabulary.json / vocabulary.txt (one token per line, in id
 * order), which is enough to decode but not to encode.  Timestamp tokens
 * <|0.00|> ... are appended up to n_vocab when the file stops short, as
 * CTranslate2's converter does.
 *
 * A tokenizer is immutable after creation and may be shared between
 * threads.
 */
#ifndef SOTTO_TOKENIZER_H
#define SOTTO_TOKENIZER_H

#include <stddef.h>

typedef struct sotto__tokenizer sotto__tokenizer;

/* Longest token string accepted from a vocabulary file, in bytes. */
#define SOTTO__MAX_TOKEN_BYTES 1024

/*
 * Loads the tokenizer of model folder `dir`: tokenizer.json if present,
 * else vocabulary.json, else vocabulary.txt.  n_vocab is the number of rows
 * of the model's embedding; the tokenizer must end up with exactly that many
 * ids (fewer in the file are completed with timestamp tokens, more is an
 * error).  Returns 0 or a negative SOTTO_E* code with a message in err:
 * SOTTO_EINVAL for bad arguments, SOTTO_EMODEL for a missing or malformed
 * vocabulary, SOTTO_EIO when a file exists but cannot be read.
 */
int sotto__tokenizer_create(const char *dir, int n_vocab,
                            sotto__tokenizer **out, char *err, size_t errcap);
void sotto__tokenizer_destroy(sotto__tokenizer *tok);

int sotto__tokenizer_n_vocab(const sotto__tokenizer *tok);

/* The id of the token whose vocabulary string is exactly `s` (e.g.
 * "<|endoftext|>", "<|0.00|>"), or -1.  Should a decode-only vocabulary
 * list a string twice, the lowest id is returned. */
int sotto__tokenizer_find(const sotto__tokenizer *tok, const char *s);

/* The vocabulary string of `id` (e.g. "Ġthe"), or NULL if out of range. */
const char *sotto__tokenizer_token(const sotto__tokenizer *tok, int id);

/*
 * Decodes ids to UTF-8 text, GPT-2 byte-level: each vocabulary character
 * maps back to one byte.  Ids >= eot_id (special and timestamp tokens) are
 * skipped; eot_id must be >= 0 (pass n_vocab to keep every id).  Byte
 * sequences that are not valid UTF-8 become U+FFFD, one per maximal
 * ill-formed subpart, as the HF tokenizer and Python's
 * decode(errors="replace") do.  Writes at most cap bytes including the NUL
 * and returns the length the full text needs (excluding the NUL), like
 * snprintf, or a negative code (SOTTO_EINVAL for an id out of range).
 */
int sotto__tokenizer_decode(const sotto__tokenizer *tok, const int *ids,
                            int n, int eot_id, char *out, size_t cap);

/* The raw bytes of one token (not UTF-8 validated), as decode sees them.
 * Returns the byte count written (at most cap) or a negative code; a cap of
 * SOTTO__MAX_TOKEN_BYTES always holds the whole token. */
int sotto__tokenizer_token_bytes(const sotto__tokenizer *tok, int id,
                                 unsigned char *out, size_t cap);

/* 1 if the tokenizer has BPE merges and can encode: it came from a
 * tokenizer.json whose pipeline is the GPT-2 one encode() implements. */
int sotto__tokenizer_can_encode(const sotto__tokenizer *tok);

/*
 * Encodes UTF-8 text to ids with the GPT-2 pre-tokenizer split and BPE
 * merges, exactly as HF tokenizers' encode(text, add_special_tokens=False)
 * with ByteLevel BPE and add_prefix_space false; like it, the added tokens
 * of tokenizer.json (e.g. "<|endoftext|>") found in the text become their
 * ids.  Writes at most cap ids and returns the number the whole text needs,
 * or a negative code (SOTTO_EUNSUPPORTED when there are no merges,
 * SOTTO_EINVAL for invalid UTF-8).
 */
int sotto__tokenizer_encode(const sotto__tokenizer *tok, const char *text,
                            int *ids, int cap);

#endif
