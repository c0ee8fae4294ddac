/*
 * safetensors.h - a strict reader of the safetensors file format (internal).
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of
 * JSON, then the tensor data.  The JSON object maps each tensor name to
 * {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, the
 * offsets counted from the first byte after the header; an optional
 * "__metadata__" entry maps strings to strings and is ignored here.
 *
 * sotto__safetensors_parse() checks everything a reader relies on before
 * anything is used: the header length against the input and against
 * SOTTO__SAFETENSORS_MAX_HEADER, the JSON syntax, every field's type,
 * known dtypes, non-negative integer dimensions, offsets inside the data
 * area, byte counts equal to the element count times the item size (with
 * overflow checks) and unique names.  Tensors point into the caller's
 * buffer, which must outlive the parsed result; the data is not aligned,
 * so copy it out with memcpy.
 */
#ifndef SOTTO_SAFETENSORS_H
#define SOTTO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

/* The largest JSON header accepted, in bytes.  The Silero VAD file's is
 * 1,208 bytes; the format's own reference reader allows 100 MB, which no
 * file sotto reads comes near. */
#define SOTTO__SAFETENSORS_MAX_HEADER (1u << 20)

/* The most tensors and the highest rank accepted. */
#define SOTTO__SAFETENSORS_MAX_TENSORS 1024
#define SOTTO__SAFETENSORS_MAX_RANK 8

typedef struct sotto__st_tensor {
    char *name;                          /* NUL-terminated, owned */
    char dtype[8];                       /* as in the header, e.g. "F32" */
    int rank;
    int64_t shape[SOTTO__SAFETENSORS_MAX_RANK];
    const unsigned char *data;           /* inside the parsed buffer */
    size_t nbytes;                       /* elements x item size */
} sotto__st_tensor;

typedef struct sotto__safetensors {
    sotto__st_tensor *tensors;           /* [n], in header order */
    int n;
} sotto__safetensors;

/* Parses the file image data[0 .. len).  On success fills *out (release it
 * with sotto__safetensors_free) and returns 0; otherwise returns
 * SOTTO_EMODEL (or SOTTO_ENOMEM) with a message naming the problem, and
 * *out is left empty. */
int sotto__safetensors_parse(const void *data, size_t len,
                             sotto__safetensors *out, char *err,
                             size_t errcap);

/* The tensor called name, or NULL. */
const sotto__st_tensor *sotto__safetensors_find(const sotto__safetensors *st,
                                                const char *name);

/* Frees what parse allocated; safe on an empty or zeroed struct. */
void sotto__safetensors_free(sotto__safetensors *st);

#endif
