/* journalstate._speedups: the optional compiled commit and replay paths.
 *
 * What belongs here: C versions of the hot loops whose pure Python originals stay the
 * reference (and run when this module is missing or JOURNALSTATE_PURE=1 is set; see
 * journalstate/_accel.py):
 *
 *   crc32c(data, value=0)      the crc32c package's function (SSE4.2 when the CPU has it)
 *   build_record(...)          _writer.build_record: a commit record plus the end marker
 *   replay_run(...)            _reader._replay_run: the batch replay loop
 *   dirty_chunks(...)          _checkpoint.dirty_chunks: the chunks a checkpoint rewrites
 *   FlatDiff(cls, fields, fallback)
 *                              _codegen's generated diff, for a schema whose fields are all
 *                              ints, bools, f64s, Bytes or Str: compare, pack, join adjacent
 *                              patches
 *
 * Each function gives exactly what its original gives (a differential test holds them
 * equal: tests/test_speedups.py). None of them calls back into Python code on its usual
 * path, so no Python signal handler runs in the middle of one: each call is one step for a
 * handler, as one bytecode is. Whatever is unusual (a bad value, an unexpected type) is
 * handed to the Python original, which raises its own typed error.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#if PY_BIG_ENDIAN
#error "journalstate._speedups writes little-endian images with memcpy: little-endian hosts only"
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define JS_HAVE_SSE42 1
#include <nmmintrin.h>
#endif

/* --- crc32c ---------------------------------------------------------------------------------- */

static uint32_t crc_table[8][256];
static int crc_hw = 0;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = crc_table[0][i];
        for (int t = 1; t < 8; t++) {
            c = (c >> 8) ^ crc_table[0][c & 0xFF];
            crc_table[t][i] = c;
        }
    }
#ifdef JS_HAVE_SSE42
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
}

static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xFF];
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        uint32_t lo = (uint32_t)w ^ crc, hi = (uint32_t)(w >> 32);
        crc = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
              crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^
              crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
              crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xFF];
    return ~crc;
}

#ifdef JS_HAVE_SSE42
__attribute__((target("sse4.2"))) static uint32_t crc_sse(uint32_t crc, const unsigned char *p,
                                                           size_t n) {
    uint64_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        n -= 8;
    }
    while (n--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

static uint32_t crc32c(uint32_t crc, const unsigned char *p, size_t n) {
#ifdef JS_HAVE_SSE42
    if (crc_hw) return crc_sse(crc, p, n);
#endif
    return crc_sw(crc, p, n);
}

static inline uint32_t crc_mask(uint32_t v) {
    return ((v >> 15) | (v << 17)) + 0xA282EAD8u;
}

static PyObject *py_crc32c(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "crc32c(data, value=0)");
        return NULL;
    }
    uint32_t value = 0;
    if (nargs == 2) {
        unsigned long v = PyLong_AsUnsignedLongMask(args[1]);
        if (v == (unsigned long)-1 && PyErr_Occurred()) return NULL;
        value = (uint32_t)v;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    uint32_t c;
    if (view.len >= 65536) {
        Py_BEGIN_ALLOW_THREADS
        c = crc32c(value, view.buf, (size_t)view.len);
        Py_END_ALLOW_THREADS
    } else {
        c = crc32c(value, view.buf, (size_t)view.len);
    }
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

/* --- little-endian stores and loads ------------------------------------------------------- */

static inline void put_u16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint32_t get_u32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t get_u64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* --- records ------------------------------------------------------------------------------- */

#define RECORD_HEADER_SIZE 48
#define PATCH_HEAD_SIZE 8
#define RECORD_ALIGN 8
#define END_MARKER_SIZE 48
#define KIND_COMMIT 1

/* An unsigned argument that must fit in `bits` bits, as struct.pack's range check. */
static int arg_u(PyObject *o, int bits, uint64_t *out) {
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    if (bits < 64 && v >> bits) {
        PyErr_SetString(PyExc_OverflowError, "a record field is out of range");
        return -1;
    }
    *out = v;
    return 0;
}

/* build_record(epoch, seq, position, durable_seq, generation, patches) -> (bytes, size) */
static PyObject *py_build_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "build_record takes 6 arguments");
        return NULL;
    }
    uint64_t epoch, seq, position, durable, generation;
    if (arg_u(args[0], 32, &epoch) < 0 || arg_u(args[1], 64, &seq) < 0 ||
        arg_u(args[2], 64, &position) < 0 || arg_u(args[3], 64, &durable) < 0 ||
        arg_u(args[4], 64, &generation) < 0)
        return NULL;
    PyObject *patches = args[5];
    if (!PyList_CheckExact(patches)) {
        PyErr_SetString(PyExc_TypeError, "patches must be a list");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(patches);
    /* First pass: check the patches and add up the payload. */
    uint64_t length = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(patches, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2 ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(item, 1))) {
            PyErr_SetString(PyExc_TypeError, "a patch must be a (int, bytes) tuple");
            return NULL;
        }
        Py_ssize_t n = PyBytes_GET_SIZE(PyTuple_GET_ITEM(item, 1));
        if ((uint64_t)n > 0xFFFFFFFFu) {
            PyErr_SetString(PyExc_OverflowError, "a patch is too long");
            return NULL;
        }
        length += PATCH_HEAD_SIZE + (uint64_t)n;
    }
    if (length > 0xFFFFFFFFu) {
        PyErr_SetString(PyExc_OverflowError, "a record's payload is too long");
        return NULL;
    }
    uint64_t size = (RECORD_HEADER_SIZE + length + RECORD_ALIGN - 1) & ~(uint64_t)(RECORD_ALIGN - 1);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(size + END_MARKER_SIZE));
    if (out == NULL) return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    put_u32(p + 4, (uint32_t)length);
    put_u32(p + 8, (uint32_t)epoch);
    put_u16(p + 12, KIND_COMMIT);
    put_u16(p + 14, 0);
    put_u64(p + 16, seq);
    put_u64(p + 24, position);
    put_u64(p + 32, durable);
    put_u64(p + 40, generation);
    unsigned char *q = p + RECORD_HEADER_SIZE;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(patches, i);
        uint64_t offset;
        if (arg_u(PyTuple_GET_ITEM(item, 0), 32, &offset) < 0) {
            Py_DECREF(out);
            return NULL;
        }
        PyObject *data = PyTuple_GET_ITEM(item, 1);
        Py_ssize_t n = PyBytes_GET_SIZE(data);
        put_u32(q, (uint32_t)offset);
        put_u32(q + 4, (uint32_t)n);
        memcpy(q + PATCH_HEAD_SIZE, PyBytes_AS_STRING(data), (size_t)n);
        q += PATCH_HEAD_SIZE + n;
    }
    /* The padding and the end marker: zeros. */
    memset(q, 0, (size_t)(p + size + END_MARKER_SIZE - q));
    put_u32(p, crc_mask(crc32c(0, p + 4, (size_t)(size - 4))));
    PyObject *n = PyLong_FromUnsignedLongLong(size);
    if (n == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    PyObject *result = PyTuple_New(2);
    if (result == NULL) {
        Py_DECREF(out);
        Py_DECREF(n);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, out);
    PyTuple_SET_ITEM(result, 1, n);
    return result;
}

/* --- replay -------------------------------------------------------------------------------- */

/* replay_run(ring, journal_size, image, epoch, position, seq, end, state_size, max_length,
 *            generation, chunk) -> (position, seq, newer)
 *
 * _reader._replay_run: one copy of up to `chunk` ring bytes from `position` (made before
 * anything of it is checked), then each record that continues the chain is checked and its
 * patches applied to `image`; the first record it is not sure of is left to the careful path.
 */
static PyObject *py_replay_run(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "replay_run takes 11 arguments");
        return NULL;
    }
    uint64_t journal_size, epoch, position, seq, end, state_size, max_length, generation, chunk;
    if (arg_u(args[1], 64, &journal_size) < 0 || arg_u(args[3], 64, &epoch) < 0 ||
        arg_u(args[4], 64, &position) < 0 || arg_u(args[5], 64, &seq) < 0 ||
        arg_u(args[6], 64, &end) < 0 || arg_u(args[7], 64, &state_size) < 0 ||
        arg_u(args[8], 64, &max_length) < 0 || arg_u(args[9], 64, &generation) < 0 ||
        arg_u(args[10], 64, &chunk) < 0)
        return NULL;
    if (journal_size == 0 || end < position) {
        PyErr_SetString(PyExc_ValueError, "replay_run: bad window");
        return NULL;
    }
    Py_buffer ring, image;
    if (PyObject_GetBuffer(args[0], &ring, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[2], &image, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&ring);
        return NULL;
    }
    uint64_t start = position % journal_size;
    uint64_t stop = journal_size;
    if (start + (end - position) < stop) stop = start + (end - position);
    if (start + chunk < stop) stop = start + chunk;
    if (stop > (uint64_t)ring.len) stop = (uint64_t)ring.len; /* a slice stops at the end too */
    uint64_t limit = stop > start ? stop - start : 0;
    unsigned char *buf = NULL;
    if (limit) {
        buf = PyMem_Malloc((size_t)limit);
        if (buf == NULL) {
            PyBuffer_Release(&ring);
            PyBuffer_Release(&image);
            return PyErr_NoMemory();
        }
        memcpy(buf, (const unsigned char *)ring.buf + start, (size_t)limit);
    }
    PyBuffer_Release(&ring);
    if ((uint64_t)image.len != state_size) {
        /* _replay_run writes slices of a bytearray of state_size bytes; anything else is a
         * caller's mistake. */
        PyMem_Free(buf);
        PyBuffer_Release(&image);
        PyErr_SetString(PyExc_ValueError, "replay_run: the image is not state_size bytes");
        return NULL;
    }
    unsigned char *img = image.buf;
    const uint64_t anchor = epoch | ((uint64_t)KIND_COMMIT << 32);
    const uint64_t head_size = RECORD_HEADER_SIZE + PATCH_HEAD_SIZE;
    uint64_t at = 0, want = seq + 1;
    int newer = 0;
    if (seq == UINT64_MAX) limit = 0; /* no u64 seq follows it */
    while (limit >= head_size && at <= limit - head_size) {
        const unsigned char *r = buf + at;
        uint32_t stored = get_u32(r);
        uint64_t length = get_u32(r + 4);
        if (get_u64(r + 8) != anchor || get_u64(r + 16) != want ||
            get_u64(r + 24) - at != position || length > max_length)
            break;
        uint64_t after = at + ((length + RECORD_HEADER_SIZE + RECORD_ALIGN - 1) &
                               ~(uint64_t)(RECORD_ALIGN - 1));
        if (after > limit) break;
        if (crc_mask(crc32c(0, r + 4, (size_t)(after - at - 4))) != stored) break;
        /* The patches: all checked (as parse_patches) before the first is applied. */
        const unsigned char *p = r + RECORD_HEADER_SIZE, *pend = p + length;
        int bad = 0;
        while (p < pend) {
            if ((uint64_t)(pend - p) < PATCH_HEAD_SIZE) {
                bad = 1;
                break;
            }
            uint64_t offset = get_u32(p), n = get_u32(p + 4);
            p += PATCH_HEAD_SIZE;
            if (n > (uint64_t)(pend - p) || offset + n > state_size) {
                bad = 1;
                break;
            }
            p += n;
        }
        if (bad) break;
        p = r + RECORD_HEADER_SIZE;
        while (p < pend) {
            uint64_t offset = get_u32(p), n = get_u32(p + 4);
            memcpy(img + offset, p + PATCH_HEAD_SIZE, (size_t)n);
            p += PATCH_HEAD_SIZE + n;
        }
        if (get_u64(r + 40) > generation) newer = 1;
        at = after;
        want += 1;
    }
    PyMem_Free(buf);
    PyBuffer_Release(&image);
    return Py_BuildValue("(KKO)", (unsigned long long)(position + at),
                         (unsigned long long)(want - 1), newer ? Py_True : Py_False);
}

/* --- checkpoints ---------------------------------------------------------------------------- */

/* dirty_chunks(logged, state_size, chunk) -> list[int]
 *
 * _checkpoint.dirty_chunks: the chunks of the state that the logged patches touch, in order
 * (each entry of `logged` a list of (offset, bytes) patches; offsets are never negative).
 */
static PyObject *py_dirty_chunks(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "dirty_chunks takes 3 arguments");
        return NULL;
    }
    Py_ssize_t state_size = PyLong_AsSsize_t(args[1]);
    if (state_size == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t chunk = PyLong_AsSsize_t(args[2]);
    if (chunk == -1 && PyErr_Occurred()) return NULL;
    if (state_size < 0 || chunk <= 0) {
        PyErr_SetString(PyExc_ValueError, "dirty_chunks: bad state_size or chunk");
        return NULL;
    }
    Py_ssize_t count = (state_size + chunk - 1) / chunk;
    unsigned char *seen = PyMem_Calloc(count ? (size_t)count : 1, 1);
    if (seen == NULL) return PyErr_NoMemory();
    PyObject *entries = PySequence_Fast(args[0], "logged must be a sequence");
    if (entries == NULL) {
        PyMem_Free(seen);
        return NULL;
    }
    Py_ssize_t n_entries = PySequence_Fast_GET_SIZE(entries);
    for (Py_ssize_t e = 0; e < n_entries; e++) {
        PyObject *patches = PySequence_Fast_GET_ITEM(entries, e);
        if (!PyList_CheckExact(patches)) {
            PyErr_SetString(PyExc_TypeError, "a log entry must be a list of patches");
            goto fail;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(patches); i++) {
            PyObject *item = PyList_GET_ITEM(patches, i);
            if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) {
                PyErr_SetString(PyExc_TypeError, "a patch must be an (offset, data) tuple");
                goto fail;
            }
            Py_ssize_t offset = PyLong_AsSsize_t(PyTuple_GET_ITEM(item, 0));
            if (offset == -1 && PyErr_Occurred()) goto fail;
            PyObject *data = PyTuple_GET_ITEM(item, 1);
            Py_ssize_t length =
                PyBytes_CheckExact(data) ? PyBytes_GET_SIZE(data) : PyObject_Size(data);
            if (length < 0) goto fail;
            if (offset < 0) {
                PyErr_SetString(PyExc_ValueError, "dirty_chunks: a negative offset");
                goto fail;
            }
            /* As Python's floor division: an empty patch marks the chunk it starts in
             * unless it starts where a chunk does (range(first, last + 1) is then empty). */
            Py_ssize_t end = offset + length - 1;
            Py_ssize_t first = offset / chunk, last = end >= 0 ? end / chunk : -1;
            if (last >= count) last = count - 1; /* chunks past the state are left out */
            for (Py_ssize_t c = first; c <= last; c++) seen[c] = 1;
        }
    }
    Py_DECREF(entries);
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        PyMem_Free(seen);
        return NULL;
    }
    for (Py_ssize_t c = 0; c < count; c++) {
        if (!seen[c]) continue;
        PyObject *n = PyLong_FromSsize_t(c);
        if (n == NULL || PyList_Append(out, n) < 0) {
            Py_XDECREF(n);
            Py_DECREF(out);
            PyMem_Free(seen);
            return NULL;
        }
        Py_DECREF(n);
    }
    PyMem_Free(seen);
    return out;
fail:
    Py_DECREF(entries);
    PyMem_Free(seen);
    return NULL;
}

/* --- the diff of a flat schema ------------------------------------------------------------ */

enum { F_UINT = 0, F_INT = 1, F_BOOL = 2, F_F64 = 3, F_BYTES = 4, F_STR = 5 };

typedef struct {
    PyObject *name; /* interned str */
    uint32_t offset;
    int code;
    int size;    /* ints: 1, 2, 4 or 8; bytes: the capacity */
    int64_t lo;  /* signed ints */
    int64_t hi;
    uint64_t uhi; /* unsigned ints */
} Field;

typedef struct {
    PyObject_HEAD
    PyObject *cls;
    PyObject *fallback;
    Py_ssize_t count;
    Field *fields;
    uint32_t max_image; /* bytes of all fields' images: the scratch buffer's size */
    vectorcallfunc vectorcall;
} FlatDiff;

typedef struct {
    unsigned char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Scratch;

static int scratch_reserve(Scratch *s, Py_ssize_t more) {
    if (s->len + more <= s->cap) return 0;
    Py_ssize_t cap = s->cap ? s->cap : 256;
    while (cap < s->len + more) cap *= 2;
    unsigned char *data = PyMem_Realloc(s->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->data = data;
    s->cap = cap;
    return 0;
}

/* The patches being built: a run of adjacent bytes (start, scratch), flushed into `out`. */
typedef struct {
    PyObject *out;
    int64_t start; /* -1: no run */
    Scratch run;
} Builder;

static int builder_flush(Builder *b) {
    if (b->start < 0) return 0;
    PyObject *data = PyBytes_FromStringAndSize((const char *)b->run.data, b->run.len);
    if (data == NULL) return -1;
    PyObject *offset = PyLong_FromLongLong(b->start);
    if (offset == NULL) {
        Py_DECREF(data);
        return -1;
    }
    PyObject *patch = PyTuple_New(2);
    if (patch == NULL) {
        Py_DECREF(data);
        Py_DECREF(offset);
        return -1;
    }
    PyTuple_SET_ITEM(patch, 0, offset);
    PyTuple_SET_ITEM(patch, 1, data);
    int rc = PyList_Append(b->out, patch);
    Py_DECREF(patch);
    b->start = -1;
    b->run.len = 0;
    return rc;
}

/* Room for `n` bytes of a patch at `offset`, joined to the run when it starts where it ends. */
static unsigned char *builder_add(Builder *b, int64_t offset, Py_ssize_t n) {
    if (b->start >= 0 && b->start + b->run.len != offset) {
        if (builder_flush(b) < 0) return NULL;
    }
    if (b->start < 0) b->start = offset;
    if (scratch_reserve(&b->run, n) < 0) return NULL;
    unsigned char *p = b->run.data + b->run.len;
    b->run.len += n;
    return p;
}

#define CHANGED 1
#define SAME 0
#define FAILED -1 /* a Python exception is set */
#define BAD -2    /* a bad value: the fallback raises its error */

/* One field: SAME, CHANGED (its patch added), BAD or FAILED. */
static int diff_field(const Field *f, PyObject *was, PyObject *value, Builder *b) {
    unsigned char *p;
    switch (f->code) {
    case F_UINT:
    case F_INT:
    case F_BOOL: {
        /* ScalarNode.diff: equal images when old and new are equal and of one type. */
        if (Py_TYPE(was) == Py_TYPE(value)) {
            int eq = PyObject_RichCompareBool(was, value, Py_EQ);
            if (eq < 0) return FAILED;
            if (eq) return SAME;
        }
        if (f->code == F_BOOL) {
            if (!PyBool_Check(value)) return BAD;
            if ((p = builder_add(b, f->offset, 1)) == NULL) return FAILED;
            p[0] = value == Py_True ? 1 : 0;
            return CHANGED;
        }
        if (!PyLong_CheckExact(value)) return BAD;
        uint64_t bits;
        if (f->code == F_UINT) {
            unsigned long long v = PyLong_AsUnsignedLongLong(value);
            if (v == (unsigned long long)-1 && PyErr_Occurred()) {
                if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return FAILED;
                PyErr_Clear();
                return BAD;
            }
            if (v > f->uhi) return BAD;
            bits = v;
        } else {
            int overflow = 0;
            long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (v == -1 && PyErr_Occurred()) return FAILED;
            if (overflow || v < f->lo || v > f->hi) return BAD;
            bits = (uint64_t)v;
        }
        if ((p = builder_add(b, f->offset, f->size)) == NULL) return FAILED;
        memcpy(p, &bits, (size_t)f->size); /* little-endian: the low bytes first */
        return CHANGED;
    }
    case F_F64: {
        if (!PyFloat_CheckExact(value)) return BAD;
        double nv = PyFloat_AS_DOUBLE(value);
        if (PyFloat_CheckExact(was)) {
            double ov = PyFloat_AS_DOUBLE(was);
            if (memcmp(&ov, &nv, 8) == 0) return SAME; /* equal images: -0.0 and 0.0 differ */
        }
        if ((p = builder_add(b, f->offset, 8)) == NULL) return FAILED;
        memcpy(p, &nv, 8);
        return CHANGED;
    }
    case F_BYTES: {
        /* BlobNode.diff: nothing when old and new are equal and of one type. */
        if (Py_TYPE(was) == Py_TYPE(value)) {
            int eq = PyObject_RichCompareBool(value, was, Py_EQ);
            if (eq < 0) return FAILED;
            if (eq) return SAME;
        }
        if (!PyBytes_CheckExact(value)) return BAD;
        Py_ssize_t n = PyBytes_GET_SIZE(value), cap = f->size;
        if (n > cap) return BAD;
        Py_ssize_t old = cap;
        if (PyBytes_CheckExact(was) && PyBytes_GET_SIZE(was) <= cap) old = PyBytes_GET_SIZE(was);
        Py_ssize_t body = old > n ? old : n;
        if ((p = builder_add(b, f->offset, 4 + body)) == NULL) return FAILED;
        put_u32(p, (uint32_t)n);
        memcpy(p + 4, PyBytes_AS_STRING(value), (size_t)n);
        if (body > n) memset(p + 4 + n, 0, (size_t)(body - n));
        return CHANGED;
    }
    case F_STR: {
        /* As F_BYTES, for the UTF-8 bytes of a str (one that cannot encode is a bad value). */
        if (Py_TYPE(was) == Py_TYPE(value)) {
            int eq = PyObject_RichCompareBool(value, was, Py_EQ);
            if (eq < 0) return FAILED;
            if (eq) return SAME;
        }
        if (!PyUnicode_CheckExact(value)) return BAD;
        Py_ssize_t n, cap = f->size;
        const char *utf8 = PyUnicode_AsUTF8AndSize(value, &n);
        if (utf8 == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return FAILED;
            PyErr_Clear();
            return BAD;
        }
        if (n > cap) return BAD;
        Py_ssize_t old = cap; /* _codegen's str_length */
        if (PyUnicode_CheckExact(was)) {
            Py_ssize_t m;
            if (PyUnicode_AsUTF8AndSize(was, &m) == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return FAILED;
                PyErr_Clear();
            } else if (m <= cap) {
                old = m;
            }
        }
        Py_ssize_t body = old > n ? old : n;
        if ((p = builder_add(b, f->offset, 4 + body)) == NULL) return FAILED;
        put_u32(p, (uint32_t)n);
        memcpy(p + 4, utf8, (size_t)n);
        if (body > n) memset(p + 4 + n, 0, (size_t)(body - n));
        return CHANGED;
    }
    }
    PyErr_SetString(PyExc_SystemError, "FlatDiff: unknown field code");
    return FAILED;
}

static PyObject *flatdiff_call(FlatDiff *self, PyObject *old, PyObject *new) {
    if (new == old) return PyList_New(0);
    if (Py_TYPE(new) != (PyTypeObject *)self->cls || Py_TYPE(old) != (PyTypeObject *)self->cls)
        return PyObject_CallFunctionObjArgs(self->fallback, old, new, NULL);
    Builder b = {NULL, -1, {NULL, 0, 0}};
    b.out = PyList_New(0);
    if (b.out == NULL) return NULL;
    int status = SAME;
    for (Py_ssize_t i = 0; i < self->count; i++) {
        const Field *f = &self->fields[i];
        PyObject *was = PyObject_GetAttr(old, f->name);
        if (was == NULL) {
            status = FAILED;
            break;
        }
        PyObject *value = PyObject_GetAttr(new, f->name);
        if (value == NULL) {
            Py_DECREF(was);
            status = FAILED;
            break;
        }
        /* attrs.evolve keeps unchanged fields by reference: they cost this one check. */
        int rc = was == value ? SAME : diff_field(f, was, value, &b);
        Py_DECREF(was);
        Py_DECREF(value);
        if (rc < 0) {
            status = rc;
            break;
        }
    }
    if (status >= 0 && builder_flush(&b) < 0) status = FAILED;
    PyMem_Free(b.run.data);
    if (status == FAILED) {
        Py_DECREF(b.out);
        return NULL;
    }
    if (status == BAD) {
        Py_DECREF(b.out);
        return PyObject_CallFunctionObjArgs(self->fallback, old, new, NULL);
    }
    return b.out;
}

static PyObject *flatdiff_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "diff(old, new) takes two positional arguments");
        return NULL;
    }
    return flatdiff_call((FlatDiff *)callable, args[0], args[1]);
}

static PyObject *flatdiff_tp_call(PyObject *self, PyObject *args, PyObject *kwargs) {
    PyObject *old, *new;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "diff(old, new) takes two positional arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OO:diff", &old, &new)) return NULL;
    return flatdiff_call((FlatDiff *)self, old, new);
}

static void flatdiff_clear_fields(FlatDiff *self) {
    if (self->fields) {
        for (Py_ssize_t i = 0; i < self->count; i++) Py_XDECREF(self->fields[i].name);
        PyMem_Free(self->fields);
        self->fields = NULL;
    }
    self->count = 0;
}

static int flatdiff_traverse(FlatDiff *self, visitproc visit, void *arg) {
    Py_VISIT(self->cls);
    Py_VISIT(self->fallback);
    return 0;
}

static int flatdiff_clear(FlatDiff *self) {
    Py_CLEAR(self->cls);
    Py_CLEAR(self->fallback);
    return 0;
}

static void flatdiff_dealloc(FlatDiff *self) {
    PyObject_GC_UnTrack(self);
    flatdiff_clear(self);
    flatdiff_clear_fields(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* FlatDiff(cls, fields, fallback): fields is a sequence of (name, offset, code, size, lo, hi). */
static int flatdiff_init(FlatDiff *self, PyObject *args, PyObject *kwargs) {
    PyObject *cls, *fields, *fallback;
    static char *kwlist[] = {"cls", "fields", "fallback", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO:FlatDiff", kwlist, &cls, &fields,
                                     &fallback))
        return -1;
    if (!PyType_Check(cls) || !PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "FlatDiff(cls: type, fields, fallback: callable)");
        return -1;
    }
    PyObject *seq = PySequence_Fast(fields, "fields must be a sequence");
    if (seq == NULL) return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    Field *table = PyMem_Calloc(count ? (size_t)count : 1, sizeof(Field));
    if (table == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name, *lo, *hi;
        unsigned int offset;
        int code, size;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "UIiiOO", &name, &offset, &code,
                              &size, &lo, &hi))
            goto fail;
        Field *f = &table[i];
        Py_INCREF(name);
        PyUnicode_InternInPlace(&name);
        f->name = name;
        f->offset = offset;
        f->code = code;
        f->size = size;
        if (code < F_UINT || code > F_STR || size < 0 ||
            ((code == F_UINT || code == F_INT) && size != 1 && size != 2 && size != 4 &&
             size != 8) ||
            (code == F_BOOL && size != 1) || (code == F_F64 && size != 8)) {
            PyErr_SetString(PyExc_ValueError, "FlatDiff: a field's code or size is wrong");
            goto fail;
        }
        if (code == F_UINT) {
            f->uhi = PyLong_AsUnsignedLongLong(hi);
            if (PyErr_Occurred()) goto fail;
        } else if (code == F_INT) {
            f->lo = PyLong_AsLongLong(lo);
            if (PyErr_Occurred()) goto fail;
            f->hi = PyLong_AsLongLong(hi);
            if (PyErr_Occurred()) goto fail;
        }
    }
    Py_DECREF(seq);
    flatdiff_clear_fields(self);
    self->fields = table;
    self->count = count;
    Py_INCREF(cls);
    Py_XSETREF(self->cls, cls);
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    return 0;
fail:
    for (Py_ssize_t i = 0; i < count; i++) Py_XDECREF(table[i].name);
    PyMem_Free(table);
    Py_DECREF(seq);
    return -1;
}

static PyObject *flatdiff_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    FlatDiff *self = (FlatDiff *)type->tp_alloc(type, 0);
    if (self != NULL) self->vectorcall = flatdiff_vectorcall;
    return (PyObject *)self;
}

static PyMemberDef flatdiff_members[] = {
    {"cls", T_OBJECT, offsetof(FlatDiff, cls), READONLY, "the schema class"},
    {"fallback", T_OBJECT, offsetof(FlatDiff, fallback), READONLY,
     "the Python diff, called for what this one does not handle"},
    {NULL}};

static PyTypeObject FlatDiffType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "journalstate._speedups.FlatDiff",
    .tp_basicsize = sizeof(FlatDiff),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "FlatDiff(cls, fields, fallback): the compiled diff of a flat schema.",
    .tp_new = flatdiff_new,
    .tp_init = (initproc)flatdiff_init,
    .tp_dealloc = (destructor)flatdiff_dealloc,
    .tp_traverse = (traverseproc)flatdiff_traverse,
    .tp_clear = (inquiry)flatdiff_clear,
    .tp_call = flatdiff_tp_call,
    .tp_vectorcall_offset = offsetof(FlatDiff, vectorcall),
    .tp_members = flatdiff_members,
};

/* --- the module ---------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"crc32c", (PyCFunction)(void (*)(void))py_crc32c, METH_FASTCALL,
     "crc32c(data, value=0): crc32c (Castagnoli) of a buffer, continuing from value."},
    {"build_record", (PyCFunction)(void (*)(void))py_build_record, METH_FASTCALL,
     "build_record(epoch, seq, position, durable_seq, generation, patches) -> (bytes, size)"},
    {"dirty_chunks", (PyCFunction)(void (*)(void))py_dirty_chunks, METH_FASTCALL,
     "dirty_chunks(logged, state_size, chunk) -> the chunks the logged patches touch"},
    {"replay_run", (PyCFunction)(void (*)(void))py_replay_run, METH_FASTCALL,
     "replay_run(ring, journal_size, image, epoch, position, seq, end, state_size, "
     "max_length, generation, chunk) -> (position, seq, newer)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "journalstate._speedups",
                                    "The optional compiled commit and replay paths.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__speedups(void) {
    crc_init();
    if (PyType_Ready(&FlatDiffType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&FlatDiffType);
    if (PyModule_AddObject(m, "FlatDiff", (PyObject *)&FlatDiffType) < 0) {
        Py_DECREF(&FlatDiffType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "hardware_crc", crc_hw) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
