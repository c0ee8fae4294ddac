/*
 * safetensors.c - a strict reader of the safetensors file format.
 *
 * See safetensors.h.  The JSON header is parsed with cJSON from a bounded,
 * not NUL-terminated buffer; every number that becomes a size is checked to
 * be a non-negative integer that a double holds exactly, and every product
 * and sum is checked for overflow before it is used, so any input, however
 * corrupt, gives either a consistent table of tensors or an error message.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "common/common.h"
#include "engine/safetensors.h"

/* The largest integer below which every integer is a double (2^53). */
#define EXACT_INT_LIMIT 9007199254740992.0

/* Item sizes of the dtypes the format defines. */
static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    { "BOOL", 1 }, { "U8", 1 }, { "I8", 1 }, { "F8_E4M3", 1 },
    { "F8_E5M2", 1 }, { "I16", 2 }, { "U16", 2 }, { "F16", 2 },
    { "BF16", 2 }, { "I32", 4 }, { "U32", 4 }, { "F32", 4 },
    { "I64", 8 }, { "U64", 8 }, { "F64", 8 },
};

static size_t dtype_size(const char *name)
{
    for (size_t i = 0; i < SOTTO__ARRAY_LEN(dtypes); i++)
        if (strcmp(dtypes[i].name, name) == 0)
            return dtypes[i].size;
    return 0;
}

/* Reads a JSON number that must be a non-negative integer below 2^53. */
static int get_uint(const cJSON *v, uint64_t *out)
{
    double d;

    if (!cJSON_IsNumber(v))
        return -1;
    d = v->valuedouble;
    if (!(d >= 0.0 && d < EXACT_INT_LIMIT) || floor(d) != d)
        return -1;
    *out = (uint64_t)d;
    return 0;
}

/* Fills t from one header entry; data_len is the size of the data area
 * that starts at base. */
static int read_entry(const cJSON *e, const unsigned char *base,
                      size_t data_len, sotto__st_tensor *t, char *err,
                      size_t errcap)
{
    const char *name = e->string;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    const cJSON *d;
    uint64_t begin, end, count = 1, isz;
    int rank = 0;

    if (!cJSON_IsObject(e))
        return sotto__errf(err, errcap, SOTTO_EMODEL,
                           "tensor \"%.64s\" is not a JSON object", name);
    if (!cJSON_IsString(dt) || strlen(dt->valuestring) >= sizeof t->dtype ||
        (isz = dtype_size(dt->valuestring)) == 0)
        return sotto__errf(err, errcap, SOTTO_EMODEL,
                           "tensor \"%.64s\" has a missing or unknown dtype",
                           name);
    if (!cJSON_IsArray(shape))
        return sotto__errf(err, errcap, SOTTO_EMODEL,
                           "tensor \"%.64s\" has no shape array", name);
    cJSON_ArrayForEach(d, shape) {
        uint64_t dim;
        if (rank == SOTTO__SAFETENSORS_MAX_RANK)
            return sotto__errf(err, errcap, SOTTO_EMODEL,
                               "tensor \"%.64s\" has more than %d dimensions",
                               name, SOTTO__SAFETENSORS_MAX_RANK);
        if (get_uint(d, &dim) != 0)
            return sotto__errf(err, errcap, SOTTO_EMODEL,
                               "tensor \"%.64s\" has a dimension that is not "
                               "a non-negative integer", name);
        /* The element count times the item size must fit in the data
         * area, so any product above it is refused before it overflows. */
        if (dim != 0 && count > (uint64_t)data_len / isz / dim)
            count = UINT64_MAX;
        else
            count *= dim;
        t->shape[rank++] = (int64_t)dim;
    }
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        get_uint(cJSON_GetArrayItem(offs, 0), &begin) != 0 ||
        get_uint(cJSON_GetArrayItem(offs, 1), &end) != 0)
        return sotto__errf(err, errcap, SOTTO_EMODEL,
                           "tensor \"%.64s\" needs data_offsets [begin, end] "
                           "of non-negative integers", name);
    if (begin > end || end > (uint64_t)data_len)
        return sotto__errf(err, errcap, SOTTO_EMODEL,
                           "tensor \"%.64s\" has data_offsets [%llu, %llu] "
                           "outside the %zu bytes of data", name,
                           (unsigned long long)begin, (unsigned long long)end,
                           data_len);
    if (count == UINT64_MAX || count * isz != end - begin)
        return sotto__errf(err, errcap, SOTTO_EMODEL,
                           "tensor \"%.64s\" has %llu bytes of data, which "
                           "does not match its shape and dtype %s", name,
                           (unsigned long long)(end - begin), dt->valuestring);
    t->name = strdup(name);
    if (t->name == NULL)
        return sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
    strcpy(t->dtype, dt->valuestring);
    t->rank = rank;
    t->data = base + begin;
    t->nbytes = (size_t)(end - begin);
    return 0;
}

int sotto__safetensors_parse(const void *data, size_t len,
                             sotto__safetensors *out, char *err,
                             size_t errcap)
{
    const unsigned char *p = data;
    const char *json, *parse_end = NULL;
    cJSON *root = NULL;
    const cJSON *e;
    uint64_t hlen = 0;
    size_t data_len;
    int n = 0, rc;

    memset(out, 0, sizeof *out);
    if (p == NULL || len < 8) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "the file has %zu bytes, too short for a "
                         "safetensors header", p == NULL ? (size_t)0 : len);
        goto fail;
    }
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | p[i];
    if (hlen > SOTTO__SAFETENSORS_MAX_HEADER) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "the header length %llu exceeds the limit of %u "
                         "bytes (SOTTO__SAFETENSORS_MAX_HEADER)",
                         (unsigned long long)hlen,
                         SOTTO__SAFETENSORS_MAX_HEADER);
        goto fail;
    }
    if (hlen > len - 8) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "the header length %llu runs past the end of the "
                         "file (%zu bytes): the file is truncated",
                         (unsigned long long)hlen, len);
        goto fail;
    }
    json = (const char *)p + 8;
    data_len = len - 8 - (size_t)hlen;
    root = cJSON_ParseWithLengthOpts(json, (size_t)hlen, &parse_end, 0);
    if (root == NULL || !cJSON_IsObject(root)) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "the header is not a JSON object (error near byte "
                         "%td of %llu)",
                         parse_end != NULL && parse_end >= json
                             ? parse_end - json : (ptrdiff_t)0,
                         (unsigned long long)hlen);
        goto fail;
    }
    /* The format pads the header with spaces; anything else after the
     * object is garbage. */
    for (const char *q = parse_end; q < json + hlen; q++) {
        if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n' && *q != 0) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "the header has bytes after its JSON object");
            goto fail;
        }
    }
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") != 0)
            n++;
    }
    if (n > SOTTO__SAFETENSORS_MAX_TENSORS) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "the header lists %d tensors, more than the limit "
                         "of %d", n, SOTTO__SAFETENSORS_MAX_TENSORS);
        goto fail;
    }
    out->tensors = calloc(n > 0 ? (size_t)n : 1, sizeof *out->tensors);
    if (out->tensors == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
        goto fail;
    }
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) {
                rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                                 "__metadata__ is not a JSON object");
                goto fail;
            }
            continue;
        }
        if (sotto__safetensors_find(out, e->string) != NULL) {
            rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                             "tensor \"%.64s\" is listed twice", e->string);
            goto fail;
        }
        rc = read_entry(e, p + 8 + hlen, data_len, &out->tensors[out->n],
                        err, errcap);
        if (rc != 0)
            goto fail;
        out->n++;
    }
    cJSON_Delete(root);
    return 0;
fail:
    cJSON_Delete(root);
    sotto__safetensors_free(out);
    return rc;
}

const sotto__st_tensor *sotto__safetensors_find(const sotto__safetensors *st,
                                                const char *name)
{
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->tensors[i].name, name) == 0)
            return &st->tensors[i];
    return NULL;
}

void sotto__safetensors_free(sotto__safetensors *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < st->n; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    st->tensors = NULL;
    st->n = 0;
}
