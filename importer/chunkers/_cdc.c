/* importer.chunkers._cdc: the compiled cut-point kernel for rabin, buzhash and FastCDC.
 *
 * Each *_scan function looks for cut points in a buffer that starts at the first byte of the
 * current (unfinished) chunk, and resumes from a carried state:
 *
 *     scan(buf, scanned, state, <params>) -> (cuts, scanned, state)
 *
 * `scanned` is how many bytes of the current chunk earlier calls already fed to the rolling
 * hash, `state` the hash after them (0 for a fresh chunk).  `cuts` lists the end offsets (in
 * `buf`) of the chunks completed in this call; the returned `scanned`/`state` describe the
 * unfinished chunk that starts at the last cut.  The caller keeps that chunk's bytes and passes
 * them again, followed by new data, so the windows never need bytes from before the chunk.
 * End of input is the caller's business: whatever is left is the last chunk.  Rabin and buzhash
 * test windows that lie inside the chunk, so they recompute their hashes from `buf` and only
 * use `scanned` (the state they return is Go's, for information); FastCDC uses its state.
 *
 * Speed: rabin and buzhash run several rolling hashes side by side (their single rolling update
 * is one long dependency chain), and on x86-64 CPUs that have them, vector paths chosen at
 * import (rabin: a GFNI prefilter; buzhash: an AVX-512 scan, with VBMI table lookups where
 * available); simd(False) turns those off.
 * chunk_bytes() copies the chunks out of a buffer.
 *
 * The byte loops and copies run without the GIL (Py_BEGIN_ALLOW_THREADS); the buffer protocol
 * ("y*") accepts bytes, bytearray and contiguous memoryviews.  The plain Python/numpy reference
 * in reference.py computes the same cuts from the definitions and is tested against this file.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* x86-64 vector paths (rabin's GFNI prefilter, buzhash's AVX-512 scan) are compiled with
 * per-function target attributes and chosen at import from what the CPU reports; simd(False)
 * turns them off so that tests and benchmarks can compare them with the portable loops. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(DPIP_NO_SIMD)
#include <immintrin.h>
#define CDC_X86_SIMD 1
#endif
static int simd_enabled = 1;

/* ---- cut list collected while the GIL is released ---------------------------------------- */

typedef struct {
    Py_ssize_t *v;
    Py_ssize_t n, cap;
    int failed;
} cuts_t;

static void cuts_push(cuts_t *c, Py_ssize_t x) {
    if (c->failed) return;
    if (c->n == c->cap) {
        Py_ssize_t cap = c->cap ? 2 * c->cap : 64;
        Py_ssize_t *v = (Py_ssize_t *)realloc(c->v, (size_t)cap * sizeof(Py_ssize_t));
        if (v == NULL) { c->failed = 1; return; }
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = x;
}

/* Build (cuts, scanned, state) and free the cut list; NULL with MemoryError on failure. */
static PyObject *scan_result(cuts_t *c, Py_ssize_t scanned, unsigned long long state) {
    PyObject *list = NULL, *res = NULL;
    if (c->failed) { free(c->v); return PyErr_NoMemory(); }
    list = PyList_New(c->n);
    if (list != NULL) {
        for (Py_ssize_t i = 0; i < c->n; i++) {
            PyObject *o = PyLong_FromSsize_t(c->v[i]);
            if (o == NULL) { Py_CLEAR(list); break; }
            PyList_SET_ITEM(list, i, o);
        }
    }
    free(c->v);
    if (list == NULL) return NULL;
    res = Py_BuildValue("(NnK)", list, scanned, state);
    return res;
}

/* ---- rabin (boxo chunker/rabin.go over whyrusleeping/chunker) ----------------------------- */

/* Kubo's IpfsRabinPoly: an irreducible polynomial of degree 53 over GF(2). */
#define RABIN_POL 0x3DF305DFB2A805ULL
#define RABIN_DEG 53
/* whyrusleeping/chunker's windowSize (restic uses 64). */
#define RABIN_WINDOW 16
/* polShift = deg - 8: the top byte of a 53-bit residue starts at bit 45. */
#define RABIN_SHIFT (RABIN_DEG - 8)

static uint64_t rabin_out[256]; /* out[b] = b * x^(8*15) mod P: removes the byte leaving the window */
static uint64_t rabin_mod[256]; /* mod[b] = (b * x^53 mod P) | b << 53: reduces the byte shifted past deg */

static int pol_deg(uint64_t x) { return x ? 63 - __builtin_clzll(x) : -1; }

static uint64_t pol_mod(uint64_t x, uint64_t p) {
    int dp = pol_deg(p);
    while (pol_deg(x) >= dp) x ^= p << (pol_deg(x) - dp);
    return x;
}

static void rabin_tables(void) {
    for (unsigned b = 0; b < 256; b++) {
        uint64_t h = pol_mod((uint64_t)b, RABIN_POL); /* append b to the empty hash */
        for (int i = 0; i < RABIN_WINDOW - 1; i++) h = pol_mod(h << 8, RABIN_POL);
        rabin_out[b] = h;
        rabin_mod[b] = pol_mod((uint64_t)b << RABIN_DEG, RABIN_POL) | ((uint64_t)b << RABIN_DEG);
    }
}

/* fingerprint of the 16 bytes before p (p[-16] .. p[-1]): append them to the empty hash. */
static inline uint64_t rabin_window(const uint8_t *p) {
    uint64_t d = 0;
    for (int i = -RABIN_WINDOW; i < 0; i++) d = ((d << 8) | p[i]) ^ rabin_mod[d >> RABIN_SHIFT];
    return d;
}

/* One rolling step: the window ending before p becomes the one ending after *p. */
#define RABIN_SLIDE(d, p)                                                                          \
    do {                                                                                           \
        uint64_t x_ = (d) ^ rabin_out[(p)[-RABIN_WINDOW]];                                         \
        (d) = ((x_ << 8) | *(p)) ^ rabin_mod[x_ >> RABIN_SHIFT];                                   \
    } while (0)

/* First end e in [a, b] (a >= 16) with fp(buf[e-16 .. e-1]) & mask == 0, else -1: one hash. */
static Py_ssize_t rabin_first_scalar(const uint8_t *buf, Py_ssize_t a, Py_ssize_t b, uint64_t mask) {
    if (a > b) return -1;
    uint64_t d = rabin_window(buf + a);
    if ((d & mask) == 0) return a;
    for (const uint8_t *p = buf + a, *e = buf + b; p < e; p++) {
        RABIN_SLIDE(d, p);
        if ((d & mask) == 0) return (Py_ssize_t)(p - buf) + 1;
    }
    return -1;
}

/* The rolling update is one long dependency chain (xor, shift, table load, xor: ~8 cycles per
 * byte), so a single hash leaves most of the core idle.  Every tested fingerprint depends only
 * on the 16 bytes before it (see rabin_scan), so RABIN_LANES hashes run side by side over the
 * consecutive blocks of a round, each warmed up on the 16 bytes before its block; the first hit
 * of the first lane that has one is the first hit of the round.  A round has at most
 * RABIN_BLOCK ends per lane, so a hit costs at most one round of overshoot (~20 KiB against
 * Kubo's ~170 KiB searched per chunk); lanes shorter than RABIN_LANE_MIN (where the 16-byte
 * warm-up would weigh) are left to the single hash.  Kubo's rabin over 128 MiB of random bytes,
 * kernel only, CPU time, MB/s of input on the 2-core Xeon (AVX-512 generation) this project
 * runs on: 1 lane 750, 3 lanes 2000, 4 lanes 2450, 5 lanes 2800, 6 lanes 2750, 7 lanes 2500
 * (register pressure); blocks of 2, 4 or 8 KiB within 2% of each other. */
#define RABIN_LANES 5
#define RABIN_BLOCK 4096
#define RABIN_LANE_MIN 256

/* With GFNI and AVX-512 (Ice Lake and later), a prefilter tests 64 ends at once.  The low 16
 * bits of a fingerprint are a GF(2)-linear function of the window: bit i of fp(w) is the parity of
 * (row i) & w, and per window byte k that is an 8x8 bit matrix per output byte, which is what
 * GF2P8AFFINEQB applies to every byte of a vector.  So for 64 consecutive ends, 16 unaligned
 * loads (one per window position) and 32 affine transforms XORed together give the low two bytes
 * of all 64 fingerprints.  Ends whose low 16 bits pass the mask's low 16 bits are candidates
 * (1 in 2^popcount, so only used when the mask has at least RABIN_GFNI_MIN_BITS of them) and
 * are confirmed with the full fingerprint.  Every byte tested (MIN 16, mask 2^18-1), buffers
 * in L2 as the stream feeds them, CPU time on this project's Xeon: single hash 0.5 GB/s, five
 * lanes 1.73 GB/s, prefilter 5.9 GB/s.  (Over 128 MiB in DRAM, lanes and prefilter are both
 * held to ~2.4 GB/s by memory bandwidth.) */
#define RABIN_GFNI_MIN_BITS 12
#ifdef CDC_X86_SIMD
#define RABIN_HAVE_GFNI 1
/* rabin_affine[k][o]: the GF2P8AFFINEQB matrix from window byte k (0 = oldest) to output byte o
 * of the fingerprint; byte 7-i of the qword is the row for output bit i. */
static uint64_t rabin_affine[RABIN_WINDOW][2];
static int rabin_gfni_usable;

static void rabin_gfni_init(void) {
    for (int k = 0; k < RABIN_WINDOW; k++) {
        uint64_t col[8]; /* col[j]: fingerprint of the window holding only byte 1<<j at position k */
        for (int j = 0; j < 8; j++) {
            uint8_t w[RABIN_WINDOW] = {0};
            w[k] = (uint8_t)(1u << j);
            col[j] = rabin_window(w + RABIN_WINDOW);
        }
        for (int o = 0; o < 2; o++) {
            uint64_t m = 0;
            for (int i = 0; i < 8; i++) {
                uint64_t row = 0;
                for (int j = 0; j < 8; j++) row |= ((col[j] >> (8 * o + i)) & 1) << j;
                m |= row << (8 * (7 - i));
            }
            rabin_affine[k][o] = m;
        }
    }
    __builtin_cpu_init();
    rabin_gfni_usable = __builtin_cpu_supports("gfni") && __builtin_cpu_supports("avx512bw");
}

__attribute__((target("avx512f,avx512bw,gfni")))
static Py_ssize_t rabin_first_gfni(const uint8_t *buf, Py_ssize_t a, Py_ssize_t b, uint64_t mask) {
    const __m512i m0 = _mm512_set1_epi8((char)(mask & 0xFF));
    const __m512i m1 = _mm512_set1_epi8((char)((mask >> 8) & 0xFF));
    for (; b - a + 1 >= 64; a += 64) {
        const uint8_t *w = buf + a - RABIN_WINDOW; /* byte t of load k: position k of window a+t */
        __m512i y0 = _mm512_setzero_si512(), y1 = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (int k = 0; k < RABIN_WINDOW; k++) {
            __m512i x = _mm512_loadu_si512((const void *)(w + k));
            y0 = _mm512_xor_si512(y0, _mm512_gf2p8affine_epi64_epi8(x, _mm512_set1_epi64((long long)rabin_affine[k][0]), 0));
            y1 = _mm512_xor_si512(y1, _mm512_gf2p8affine_epi64_epi8(x, _mm512_set1_epi64((long long)rabin_affine[k][1]), 0));
        }
        __m512i z = _mm512_or_si512(_mm512_and_si512(y0, m0), _mm512_and_si512(y1, m1));
        uint64_t cand = _mm512_testn_epi8_mask(z, z); /* bit t: the low 16 bits of end a+t pass */
        while (__builtin_expect(cand != 0, 0)) {
            Py_ssize_t e = a + __builtin_ctzll(cand);
            if ((rabin_window(buf + e) & mask) == 0) return e;
            cand &= cand - 1;
        }
    }
    return rabin_first_scalar(buf, a, b, mask);
}
#endif

static Py_ssize_t rabin_first(const uint8_t *buf, Py_ssize_t a, Py_ssize_t b, uint64_t mask) {
#ifdef RABIN_HAVE_GFNI
    if (simd_enabled && rabin_gfni_usable && __builtin_popcountll(mask & 0xFFFF) >= RABIN_GFNI_MIN_BITS)
        return rabin_first_gfni(buf, a, b, mask);
#endif
    while (b - a + 1 >= (Py_ssize_t)RABIN_LANES * RABIN_LANE_MIN) {
        Py_ssize_t blk = (b - a + 1) / RABIN_LANES;
        if (blk > RABIN_BLOCK) blk = RABIN_BLOCK;
        const uint8_t *p[RABIN_LANES];
        uint64_t d[RABIN_LANES];
        Py_ssize_t hit[RABIN_LANES];
#pragma GCC unroll 8
        for (int j = 0; j < RABIN_LANES; j++) {
            p[j] = buf + a + j * blk;
            d[j] = rabin_window(p[j]);
            hit[j] = -1;
        }
        /* Step i tests the window ending at p[j] + i in every lane, then slides each by a byte. */
        for (Py_ssize_t i = 0;; i++) {
            if (__builtin_expect((d[0] & mask) == 0, 0)) return a + i; /* lane 0 comes first */
#pragma GCC unroll 8
            for (int j = 1; j < RABIN_LANES; j++)
                if (__builtin_expect((d[j] & mask) == 0, 0) && hit[j] < 0) hit[j] = i;
            if (i == blk - 1) break;
#pragma GCC unroll 8
            for (int j = 0; j < RABIN_LANES; j++) RABIN_SLIDE(d[j], p[j] + i);
        }
        for (int j = 1; j < RABIN_LANES; j++)
            if (hit[j] >= 0) return a + j * blk + hit[j];
        a += RABIN_LANES * blk;
    }
    return rabin_first_scalar(buf, a, b, mask);
}

/* Cut rule (whyrusleeping/chunker): a chunk's first MIN-16 bytes are skipped (Kubo's "pre"),
 * every later byte is slid into the 16-byte window, and from length L = MIN on the chunk is cut
 * where (fingerprint & mask) == 0 or L == MAX.  Exactly 16 bytes have been slid in when L first
 * reaches MIN, so the reset state (window of zeros plus one injected byte 1) has left the window
 * and every tested digest is the pure fingerprint of the 16 bytes ending at the candidate cut:
 * cut = first L in [MIN, MAX] with fp(chunk[L-16 .. L-1]) & mask == 0, else MAX.  The search
 * for that L (rabin_first) needs no state from earlier calls: `scanned` only says which
 * lengths were already tested, and the returned digest (the rolling hash Go would hold after
 * `scanned` bytes) is informational. */
static PyObject *rabin_scan(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t scanned;
    unsigned long long digest_in, min_size, max_size, mask;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nKKKK", &view, &scanned, &digest_in, &min_size, &max_size, &mask))
        return NULL;
    (void)digest_in;
    const uint8_t *buf = (const uint8_t *)view.buf;
    const Py_ssize_t n = view.len;
    cuts_t cuts = {NULL, 0, 0, 0};
    Py_ssize_t pos = 0; /* start of the current chunk in buf */
    uint64_t digest = 0;

    if (scanned < 0 || scanned > n) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "scanned out of range");
        return NULL;
    }
    /* MinSize < 16 underflows Go's uint pre: no cut ever.  Sizes beyond the buffer never cut
     * inside it either; both cases just report everything as scanned. */
    if (min_size < RABIN_WINDOW || min_size > (unsigned long long)PY_SSIZE_T_MAX / 2 ||
        max_size > (unsigned long long)PY_SSIZE_T_MAX / 2) {
        PyBuffer_Release(&view);
        cuts_t none = {NULL, 0, 0, 0};
        return scan_result(&none, n, 0);
    }
    const Py_ssize_t mn = (Py_ssize_t)min_size, mx = (Py_ssize_t)max_size;
    const Py_ssize_t skip = mn - RABIN_WINDOW;

    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        const Py_ssize_t avail = n - pos;
        const Py_ssize_t first = scanned + 1 > mn ? scanned + 1 : mn; /* first untested length */
        const Py_ssize_t last = mx < avail ? mx : avail;                /* last testable here */
        Py_ssize_t cut = first <= last ? rabin_first(buf, pos + first, pos + last, mask) : -1;
        if (cut < 0 && avail >= mx && mx > scanned) cut = pos + mx;
        if (cut < 0) { scanned = avail; break; }
        cuts_push(&cuts, cut);
        pos = cut;
        scanned = 0;
    }
    /* Go's digest after `scanned` bytes: the bytes slid in since the skip, at most the last 16. */
    if (scanned > skip) {
        Py_ssize_t from = scanned - RABIN_WINDOW > skip ? scanned - RABIN_WINDOW : skip;
        for (Py_ssize_t i = from; i < scanned; i++)
            digest = ((digest << 8) | buf[pos + i]) ^ rabin_mod[digest >> RABIN_SHIFT];
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&view);
    return scan_result(&cuts, scanned, digest);
}

/* ---- buzhash (boxo chunker/buzhash.go) --------------------------------------------------- */

#define BUZ_WINDOW 32

static inline uint32_t rotl32(uint32_t x, unsigned r) { return (x << r) | (x >> ((32 - r) & 31)); }

/* State over the 32 bytes before p (p[-32] .. p[-1]): XOR_k rotl(T[p[k-32]], 31-k), built by
 * feeding them to the empty state (the first byte's term ends up rotated 31 times). */
static inline uint32_t buz_window(const uint8_t *p, const uint32_t *T) {
    uint32_t s = 0;
    for (int i = -BUZ_WINDOW; i < 0; i++) s = rotl32(s, 1) ^ T[p[i]];
    return s;
}

/* First end e in [a, b] (a >= 32) whose window state passes the mask, else -1: one state. */
static Py_ssize_t buz_first_scalar(const uint8_t *buf, Py_ssize_t a, Py_ssize_t b, uint32_t mask,
                                   const uint32_t *T) {
    if (a > b) return -1;
    uint32_t s = buz_window(buf + a, T);
    if ((s & mask) == 0) return a;
    for (const uint8_t *p = buf + a, *e = buf + b; p < e; p++) {
        s = rotl32(s, 1) ^ T[p[-BUZ_WINDOW]] ^ T[*p];
        if ((s & mask) == 0) return (Py_ssize_t)(p - buf) + 1;
    }
    return -1;
}

/* The roll (rotate, xor) is a 2-cycle chain per byte while the table loads are off it, so, as
 * for rabin, BUZ_LANES states run side by side over consecutive blocks of a round, each warmed
 * up on the 32 bytes before its block (see rabin_first).  Kubo's buzhash over 128 MiB of random
 * bytes, kernel only, CPU time, on this project's 2-core Xeon: one state 2.6-2.85 GB/s, 2 lanes
 * 4.2 GB/s, 3 lanes 4.2 GB/s, 4 lanes 4.45 GB/s, 5 lanes 4.4 GB/s, 6 lanes 4.3 GB/s. */
#define BUZ_LANES 4
#define BUZ_BLOCK 4096
#define BUZ_LANE_MIN 512

/* With AVX-512, 16 ends per step: the roll s_e = rotl(s_{e-1}, 1) ^ D_e, D_e = T[leaving] ^
 * T[entering], unrolls over 16 lanes into s_{e0+j} = rotl(s_{e0}, j) ^ XOR_{i<=j} rotl(D_i, j-i),
 * a prefix "sum" done in four shift-rotate-xor steps; only the carried state (rotate, xor,
 * broadcast of the last lane) depends on the previous step.  T[entering] comes from one 16-way gather and is reused as
 * T[leaving] 32 ends (two steps) later.  Kubo's mask, every byte tested, buffers in L2, CPU
 * time on this project's Xeon: four lanes 2.25 GB/s, AVX-512 with gathers 2.6 GB/s, with the
 * VBMI lookups below 4.05 GB/s. */
#ifdef CDC_X86_SIMD
static int buz_avx512_usable, buz_vbmi_usable;

/* The states at ends e0+1 .. e0+16 from T of the 16 entering and 16 leaving bytes and the
 * state at e0 (in every lane of `carry`). */
__attribute__((target("avx512f"), always_inline))
static inline __m512i buz_states16(__m512i in, __m512i out, __m512i carry) {
    const __m512i zero = _mm512_setzero_si512();
    const __m512i turns = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
    __m512i v = _mm512_xor_si512(in, out);
    v = _mm512_xor_si512(v, _mm512_rol_epi32(_mm512_alignr_epi32(v, zero, 15), 1));
    v = _mm512_xor_si512(v, _mm512_rol_epi32(_mm512_alignr_epi32(v, zero, 14), 2));
    v = _mm512_xor_si512(v, _mm512_rol_epi32(_mm512_alignr_epi32(v, zero, 12), 4));
    v = _mm512_xor_si512(v, _mm512_rol_epi32(_mm512_alignr_epi32(v, zero, 8), 8));
    return _mm512_xor_si512(v, _mm512_rolv_epi32(carry, turns));
}

/* T of the 16 bytes at p, one per lane. */
__attribute__((target("avx512f"), always_inline))
static inline __m512i buz_gather16(const uint8_t *p, const uint32_t *T) {
    return _mm512_i32gather_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)), (const int *)T, 4);
}

/* From end e0 on (state in `carry`; T of bytes e0-32 .. e0-1 in `older`, `old`): 16-end steps,
 * then one state at a time up to end b.  First end that passes the mask, else -1. */
__attribute__((target("avx512f")))
static Py_ssize_t buz_scan16(const uint8_t *buf, Py_ssize_t e0, Py_ssize_t b, uint32_t mask,
                             const uint32_t *T, __m512i older, __m512i old, __m512i carry) {
    const __m512i m = _mm512_set1_epi32((int)mask), last = _mm512_set1_epi32(15);
    /* Lane j of a step at e0 is end e0+1+j: byte e0+j enters, byte e0+j-32 leaves. */
    for (; b - e0 >= 16; e0 += 16) {
        __m512i in = buz_gather16(buf + e0, T);
        __m512i st = buz_states16(in, older, carry);
        __mmask16 hit = _mm512_testn_epi32_mask(st, m);
        if (__builtin_expect(hit != 0, 0)) return e0 + 1 + __builtin_ctz(hit);
        carry = _mm512_permutexvar_epi32(last, st); /* the state at e0+16, in every lane */
        older = old;
        old = in;
    }
    uint32_t c = (uint32_t)_mm512_cvtsi512_si32(carry);
    for (const uint8_t *p = buf + e0, *e = buf + b; p < e; p++) {
        c = rotl32(c, 1) ^ T[p[-BUZ_WINDOW]] ^ T[*p];
        if ((c & mask) == 0) return (Py_ssize_t)(p - buf) + 1;
    }
    return -1;
}

__attribute__((target("avx512f")))
static Py_ssize_t buz_first_avx512(const uint8_t *buf, Py_ssize_t a, Py_ssize_t b, uint32_t mask,
                                   const uint32_t *T) {
    if (a > b) return -1;
    uint32_t c = buz_window(buf + a, T); /* state at end a */
    if ((c & mask) == 0) return a;
    return buz_scan16(buf, a, b, mask, T, buz_gather16(buf + a - 32, T), buz_gather16(buf + a - 16, T),
                      _mm512_set1_epi32((int)c));
}

/* With AVX512-VBMI the table lookups need no gather: T is split into four byte planes of 256
 * entries, each looked up for 64 bytes at once by two VPERMI2B (128 entries each) and a blend on
 * the index's top bit; unpacking the planes then gives T of the 64 bytes as four vectors of 16
 * dwords.  The bytes are first permuted so that the unpacks, which work within 128-bit lanes,
 * leave the dwords in order.  About twice as fast as the gathers (which measured ~13 cycles per
 * 16 here against ~5 for everything else in a step). */
__attribute__((target("avx512f,avx512bw,avx512vbmi")))
static Py_ssize_t buz_first_vbmi(const uint8_t *buf, Py_ssize_t a, Py_ssize_t b, uint32_t mask,
                                 const uint32_t *T) {
    if (a > b) return -1;
    uint32_t c = buz_window(buf + a, T);
    if ((c & mask) == 0) return a;
    __m512i older = buz_gather16(buf + a - 32, T), old = buz_gather16(buf + a - 16, T);
    __m512i carry = _mm512_set1_epi32((int)c);
    Py_ssize_t e0 = a;
    if (b - e0 >= 64) {
        uint8_t planes[4][256];
        for (int q = 0; q < 4; q++)
            for (int x = 0; x < 256; x++) planes[q][x] = (uint8_t)(T[x] >> (8 * q));
        __m512i tab[4][4];
        for (int q = 0; q < 4; q++)
            for (int h = 0; h < 4; h++) tab[q][h] = _mm512_loadu_si512((const void *)(planes[q] + 64 * h));
        /* Byte 16L+4k+i of the permuted input is byte 16k+4L+i (L: 128-bit lane, k, i < 4). */
        uint8_t order[64];
        for (int L = 0; L < 4; L++)
            for (int k = 0; k < 4; k++)
                for (int i = 0; i < 4; i++) order[16 * L + 4 * k + i] = (uint8_t)(16 * k + 4 * L + i);
        const __m512i perm = _mm512_loadu_si512((const void *)order);
        const __m512i m = _mm512_set1_epi32((int)mask), last = _mm512_set1_epi32(15);
        for (; b - e0 >= 64; e0 += 64) {
            __m512i x = _mm512_permutexvar_epi8(perm, _mm512_loadu_si512((const void *)(buf + e0)));
            __mmask64 top = _mm512_movepi8_mask(x);
            __m512i p[4];
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++)
                p[q] = _mm512_mask_blend_epi8(top, _mm512_permutex2var_epi8(tab[q][0], x, tab[q][1]),
                                              _mm512_permutex2var_epi8(tab[q][2], x, tab[q][3]));
            __m512i lo01 = _mm512_unpacklo_epi8(p[0], p[1]), hi01 = _mm512_unpackhi_epi8(p[0], p[1]);
            __m512i lo23 = _mm512_unpacklo_epi8(p[2], p[3]), hi23 = _mm512_unpackhi_epi8(p[2], p[3]);
            __m512i in[4] = {_mm512_unpacklo_epi16(lo01, lo23), _mm512_unpackhi_epi16(lo01, lo23),
                             _mm512_unpacklo_epi16(hi01, hi23), _mm512_unpackhi_epi16(hi01, hi23)};
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                __m512i out = g == 0 ? older : g == 1 ? old : in[g - 2];
                __m512i st = buz_states16(in[g], out, carry);
                __mmask16 hit = _mm512_testn_epi32_mask(st, m);
                if (__builtin_expect(hit != 0, 0)) return e0 + 16 * g + 1 + __builtin_ctz(hit);
                carry = _mm512_permutexvar_epi32(last, st);
            }
            older = in[2];
            old = in[3];
        }
    }
    return buz_scan16(buf, e0, b, mask, T, older, old, carry);
}
#endif

static Py_ssize_t buz_first(const uint8_t *buf, Py_ssize_t a, Py_ssize_t b, uint32_t mask,
                            const uint32_t *T) {
#ifdef CDC_X86_SIMD
    if (simd_enabled && buz_vbmi_usable) return buz_first_vbmi(buf, a, b, mask, T);
    if (simd_enabled && buz_avx512_usable) return buz_first_avx512(buf, a, b, mask, T);
#endif
    while (b - a + 1 >= (Py_ssize_t)BUZ_LANES * BUZ_LANE_MIN) {
        Py_ssize_t blk = (b - a + 1) / BUZ_LANES;
        if (blk > BUZ_BLOCK) blk = BUZ_BLOCK;
        const uint8_t *p[BUZ_LANES];
        uint32_t s[BUZ_LANES];
        Py_ssize_t hit[BUZ_LANES];
#pragma GCC unroll 8
        for (int j = 0; j < BUZ_LANES; j++) {
            p[j] = buf + a + j * blk;
            s[j] = buz_window(p[j], T);
            hit[j] = -1;
        }
        for (Py_ssize_t i = 0;; i++) {
            if (__builtin_expect((s[0] & mask) == 0, 0)) return a + i;
#pragma GCC unroll 8
            for (int j = 1; j < BUZ_LANES; j++)
                if (__builtin_expect((s[j] & mask) == 0, 0) && hit[j] < 0) hit[j] = i;
            if (i == blk - 1) break;
#pragma GCC unroll 8
            for (int j = 0; j < BUZ_LANES; j++)
                s[j] = rotl32(s[j], 1) ^ T[p[j][i - BUZ_WINDOW]] ^ T[p[j][i]];
        }
        for (int j = 1; j < BUZ_LANES; j++)
            if (hit[j] >= 0) return a + j * blk + hit[j];
        a += BUZ_LANES * blk;
    }
    return buz_first_scalar(buf, a, b, mask, T);
}

/* Cut rule: the state over the 32 bytes before length L is XOR_k rotl(T[b[L-32+k]], 31-k); cut at
 * the first L in [MIN, MAX) with (state & mask) == 0, else at MAX.  Rolling needs no rotation for
 * the byte leaving: its term has been rotated 32 times, which is the identity.  As for rabin, the
 * search needs no state from earlier calls (`scanned` says which lengths were tested; the state
 * returned is the one Go would hold after `scanned` bytes, for information). */
static PyObject *buzhash_scan(PyObject *self, PyObject *args) {
    Py_buffer view, tview;
    Py_ssize_t scanned;
    unsigned long long state_in, min_size, max_size, mask_in;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nKKKKy*", &view, &scanned, &state_in, &min_size, &max_size, &mask_in,
                          &tview))
        return NULL;
    (void)state_in;
    if (tview.len != 256 * 4 || min_size < BUZ_WINDOW || max_size <= min_size ||
        max_size > (unsigned long long)PY_SSIZE_T_MAX / 2 || scanned < 0 || scanned > view.len) {
        PyBuffer_Release(&view);
        PyBuffer_Release(&tview);
        PyErr_SetString(PyExc_ValueError, "buzhash_scan: bad table or parameters");
        return NULL;
    }
    uint32_t T[256];
    for (int i = 0; i < 256; i++) {
        const uint8_t *q = (const uint8_t *)tview.buf + 4 * i; /* little-endian uint32 */
        T[i] = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
    }
    PyBuffer_Release(&tview);
    const uint8_t *buf = (const uint8_t *)view.buf;
    const Py_ssize_t n = view.len;
    const Py_ssize_t mn = (Py_ssize_t)min_size, mx = (Py_ssize_t)max_size;
    const Py_ssize_t skip = mn - BUZ_WINDOW;
    const uint32_t mask = (uint32_t)mask_in;
    cuts_t cuts = {NULL, 0, 0, 0};
    Py_ssize_t pos = 0;
    uint32_t state = 0;

    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        const Py_ssize_t avail = n - pos;
        const Py_ssize_t first = scanned + 1 > mn ? scanned + 1 : mn; /* first untested length */
        const Py_ssize_t last = mx - 1 < avail ? mx - 1 : avail;       /* MAX itself always cuts */
        Py_ssize_t cut = first <= last ? buz_first(buf, pos + first, pos + last, mask, T) : -1;
        if (cut < 0 && avail >= mx && mx > scanned) cut = pos + mx;
        if (cut < 0) { scanned = avail; break; }
        cuts_push(&cuts, cut);
        pos = cut;
        scanned = 0;
    }
    /* Go's state after `scanned` bytes: the bytes rolled in since the skip, at most the last 32. */
    if (scanned > skip) {
        Py_ssize_t from = scanned - BUZ_WINDOW > skip ? scanned - BUZ_WINDOW : skip;
        for (Py_ssize_t i = from; i < scanned; i++) state = rotl32(state, 1) ^ T[buf[pos + i]];
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&view);
    return scan_result(&cuts, scanned, state);
}

/* ---- FastCDC with normalized chunking (Xia et al., USENIX ATC 2016 / IEEE TPDS 2020) ------- */

/* Cut rule (the paper's Algorithm 2): the gear hash fp = (fp << 1) + G[b] starts at 0 at chunk
 * offset MIN; the byte at offset i (MIN <= i < MAX) is hashed, and if fp & mask == 0 the chunk
 * is the first i bytes (mask_s, the harder one, while i < AVG; mask_l from AVG on).  No match
 * before MAX: the chunk is MAX bytes. */
static PyObject *gear_scan(PyObject *self, PyObject *args) {
    Py_buffer view, tview;
    Py_ssize_t scanned;
    unsigned long long fp_in, min_size, avg_size, max_size, mask_s, mask_l;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nKKKKKKy*", &view, &scanned, &fp_in, &min_size, &avg_size, &max_size,
                          &mask_s, &mask_l, &tview))
        return NULL;
    if (tview.len != 256 * 8 || min_size < 1 || max_size <= min_size ||
        max_size > (unsigned long long)PY_SSIZE_T_MAX / 2 || scanned < 0 || scanned > view.len) {
        PyBuffer_Release(&view);
        PyBuffer_Release(&tview);
        PyErr_SetString(PyExc_ValueError, "gear_scan: bad table or parameters");
        return NULL;
    }
    uint64_t G[256];
    for (int i = 0; i < 256; i++) {
        const uint8_t *q = (const uint8_t *)tview.buf + 8 * i; /* little-endian uint64 */
        uint64_t g = 0;
        for (int j = 7; j >= 0; j--) g = (g << 8) | q[j];
        G[i] = g;
    }
    PyBuffer_Release(&tview);
    const uint8_t *buf = (const uint8_t *)view.buf;
    const Py_ssize_t n = view.len;
    const Py_ssize_t mn = (Py_ssize_t)min_size, mx = (Py_ssize_t)max_size;
    Py_ssize_t av = avg_size > max_size ? mx : (Py_ssize_t)avg_size;
    if (av < mn) av = mn;
    const uint64_t ms = mask_s, ml = mask_l;
    cuts_t cuts = {NULL, 0, 0, 0};
    Py_ssize_t pos = 0;
    uint64_t fp = fp_in;

    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        Py_ssize_t k = scanned > mn ? scanned : mn;
        if (scanned < mn) fp = 0;
        Py_ssize_t cut = -1;
        const uint8_t *p, *e;
        /* Normal-size region: the stricter mask. */
        Py_ssize_t end = pos + av;
        if (end > n) end = n;
        p = buf + pos + k;
        e = buf + end;
        while (p < e) {
            fp = (fp << 1) + G[*p];
            if ((fp & ms) == 0) break;
            p++;
        }
        if (p < e) {
            cut = (Py_ssize_t)(p - buf);
        } else {
            k = (Py_ssize_t)(p - buf) - pos;
            if (k >= av) {
                end = pos + mx;
                if (end > n) end = n;
                p = buf + pos + k;
                e = buf + end;
                while (p < e) {
                    fp = (fp << 1) + G[*p];
                    if ((fp & ml) == 0) break;
                    p++;
                }
                if (p < e) cut = (Py_ssize_t)(p - buf);
                else {
                    k = (Py_ssize_t)(p - buf) - pos;
                    if (k >= mx) cut = pos + mx;
                }
            }
        }
        if (cut < 0) { scanned = k < n - pos ? k : n - pos; break; }
        cuts_push(&cuts, cut);
        pos = cut;
        scanned = 0;
        fp = 0;
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&view);
    return scan_result(&cuts, scanned, fp);
}

/* ---- module ------------------------------------------------------------------------------ */

/* ---- chunk copies ------------------------------------------------------------------------ */

/* chunk_bytes(buf, start, ends) -> [bytes(buf[start:ends[0]]), bytes(buf[ends[0]:ends[1]]), ...]
 * The bytes objects are allocated with the GIL and filled without it (nothing else can see them
 * yet), so a producer thread copying chunks does not hold up a consumer that is hashing. */
static PyObject *chunk_bytes(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start;
    PyObject *ends;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nO!", &view, &start, &PyList_Type, &ends)) return NULL;
    const Py_ssize_t count = PyList_GET_SIZE(ends);
    PyObject *out = PyList_New(count);
    Py_ssize_t *bounds = (Py_ssize_t *)malloc((size_t)(count + 1) * sizeof(Py_ssize_t));
    if (out == NULL || bounds == NULL) goto fail;
    bounds[0] = start;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t end = PyLong_AsSsize_t(PyList_GET_ITEM(ends, i));
        if (end == -1 && PyErr_Occurred()) goto fail;
        if (end < bounds[i] || end > view.len || bounds[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "chunk_bytes: ends out of order or out of range");
            goto fail;
        }
        bounds[i + 1] = end;
        PyObject *chunk = PyBytes_FromStringAndSize(NULL, end - bounds[i]);
        if (chunk == NULL) goto fail;
        PyList_SET_ITEM(out, i, chunk);
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++)
        memcpy(PyBytes_AS_STRING(PyList_GET_ITEM(out, i)), (const char *)view.buf + bounds[i],
               (size_t)(bounds[i + 1] - bounds[i]));
    Py_END_ALLOW_THREADS
    free(bounds);
    PyBuffer_Release(&view);
    return out;
fail:
    free(bounds);
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return NULL;
}

/* simd(enable) -> bool: allow or forbid the vector paths; returns whether one is now in use. */
static PyObject *simd(PyObject *self, PyObject *arg) {
    (void)self;
    int enable = PyObject_IsTrue(arg);
    if (enable < 0) return NULL;
    simd_enabled = enable;
#ifdef CDC_X86_SIMD
    return PyBool_FromLong(simd_enabled && (rabin_gfni_usable || buz_avx512_usable));
#else
    return PyBool_FromLong(0);
#endif
}

static PyMethodDef cdc_methods[] = {
    {"chunk_bytes", chunk_bytes, METH_VARARGS,
     "chunk_bytes(buf, start, ends) -> [bytes(buf[start:ends[0]]), bytes(buf[ends[0]:ends[1]]), ...]"},
    {"simd", simd, METH_O,
     "simd(enable) -> bool: allow the x86 vector paths (rabin GFNI, buzhash AVX-512); True if one is in use"},
    {"rabin_scan", rabin_scan, METH_VARARGS,
     "rabin_scan(buf, scanned, digest, min, max, mask) -> (cuts, scanned, digest)"},
    {"buzhash_scan", buzhash_scan, METH_VARARGS,
     "buzhash_scan(buf, scanned, state, min, max, mask, table_u32le) -> (cuts, scanned, state)"},
    {"gear_scan", gear_scan, METH_VARARGS,
     "gear_scan(buf, scanned, fp, min, avg, max, mask_s, mask_l, table_u64le) -> (cuts, scanned, fp)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cdc_module = {
    PyModuleDef_HEAD_INIT, "importer.chunkers._cdc",
    "Compiled cut-point kernel for the rabin, buzhash and FastCDC chunkers.", -1, cdc_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cdc(void) {
    rabin_tables();
#ifdef RABIN_HAVE_GFNI
    rabin_gfni_init();
#endif
#ifdef CDC_X86_SIMD
    __builtin_cpu_init();
    buz_avx512_usable = __builtin_cpu_supports("avx512f");
    buz_vbmi_usable = buz_avx512_usable && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vbmi");
#endif
    return PyModule_Create(&cdc_module);
}
