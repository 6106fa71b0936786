/* Bit-counting kernels for packed correctness rows (see analyze/kernels.py).

   Rows are np.packbits output: uint8, ceil(n/8) bytes, sample i in bit 7 - i%8 of byte i/8.
   Both kernels take T rows a as a pointer, a row stride in bytes and a row length (bytes
   within a row are contiguous), and what to XOR each row with, if anything:
     b == NULL              a[t]
     b, successive == 0     a[t] ^ b[t]       (b: T rows with stride sb; two networks)
     b, successive != 0     a[t] ^ a[t - 1]   (b: the one row before a[0]; epoch to epoch)

   Why C: numpy needs one pass over memory per operation (XOR, popcount, sum, each adder
   step), about 0.3 ns per byte in all; fused here, a chunk is read once from cache at
   about 10 GB/s, faster than reading the bits from the file (measured:
   benchmarks/analyze_bench.py). Plain C, no Python API: loaded with ctypes. */

#include <stdint.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

/* An AVX2 + POPCNT build beside the baseline one, chosen at load time (GCC's function
   multiversioning needs ifunc, i.e. glibc). Elsewhere the compiler's defaults. */
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "popcnt", "default")))
#else
#define MULTIVERSION
#endif

#define TILE 256 /* words of a row handled at once: the adder's planes stay in L1 */

/* Bumped with every change of a signature below: analyze/kernels.py refuses a library built
   from another version (ctypes cannot check arguments; an old build in place would misread). */
int dyn_bits_version(void) { return 1; }

/* The row that row t is XORed with, or NULL (see the top of this file). */
static inline const uint8_t *other(const uint8_t *a, int64_t sa, const uint8_t *b, int64_t sb, int successive,
                                   int64_t t)
{
    if (!b) return NULL;
    if (!successive) return b + t * sb;
    return t ? a + (t - 1) * sa : b;
}

static inline uint64_t load(const uint8_t *p) { uint64_t w; memcpy(&w, p, 8); return w; }

static inline uint64_t load_part(const uint8_t *p, int64_t bytes)
{
    uint64_t w = 0;
    memcpy(&w, p, (size_t)bytes);
    return w;
}

/* Horizontal counts. For t < T: ones[t] = set bits of a[t], differ[t] = set bits of
   a[t] XOR its other row; either output may be NULL (differ is then not computed).
   Only the first n bits of a row count: padding bits are masked, whatever they hold. */
MULTIVERSION
void dyn_row_counts(const uint8_t *a, int64_t stride_a, const uint8_t *b, int64_t stride_b, int successive,
                    int64_t T, int64_t n, int64_t *ones, int64_t *differ)
{
    int64_t nb = (n + 7) / 8, head = (nb - 1) / 8 * 8, tail = nb - head; /* tail: 1..8 bytes */
    uint64_t mask = ~(uint64_t)0 >> (8 * (8 - tail));
    if (n % 8) /* the low bits of the last byte are padding (bit order 'big') */
        mask &= ~((uint64_t)((1u << (8 - n % 8)) - 1) << (8 * (tail - 1)));
    if (!differ) b = NULL;
    for (int64_t t = 0; t < T; t++) {
        const uint8_t *x = a + t * stride_a, *y = other(a, stride_a, b, stride_b, successive, t);
        uint64_t c1 = 0, c2 = 0;
        if (y) {
            for (int64_t i = 0; i < head; i += 8) {
                uint64_t u = load(x + i);
                c1 += (uint64_t)__builtin_popcountll(u);
                c2 += (uint64_t)__builtin_popcountll(u ^ load(y + i));
            }
            c2 += (uint64_t)__builtin_popcountll((load_part(x + head, tail) ^ load_part(y + head, tail)) & mask);
        } else {
            for (int64_t i = 0; i < head; i += 8)
                c1 += (uint64_t)__builtin_popcountll(load(x + i));
        }
        c1 += (uint64_t)__builtin_popcountll(load_part(x + head, tail) & mask);
        if (ones) ones[t] = (int64_t)c1;
        if (differ) differ[t] = (int64_t)c2;
    }
}

/* One tile of row t (XOR the same of b) into dst: w words, the last ones zero-filled. */
static inline void fetch(uint64_t *dst, const uint8_t *x, const uint8_t *y, int64_t bytes, int64_t w)
{
    int64_t whole = bytes / 8, j;
    if (y)
        for (j = 0; j < whole; j++) dst[j] = load(x + 8 * j) ^ load(y + 8 * j);
    else
        for (j = 0; j < whole; j++) dst[j] = load(x + 8 * j);
    if (whole < w) {
        int64_t rest = bytes - 8 * whole;
        dst[whole] = rest ? load_part(x + 8 * whole, rest) ^ (y ? load_part(y + 8 * whole, rest) : 0) : 0;
        for (j = whole + 1; j < w; j++) dst[j] = 0;
    }
}

/* Carry-save adder, bitwise: a + b + c = 2 * hi + lo. lo may alias a. */
static inline void csa(uint64_t *restrict hi, uint64_t *lo, const uint64_t *a, const uint64_t *b,
                       const uint64_t *c, int64_t w)
{
    for (int64_t j = 0; j < w; j++) {
        uint64_t u = a[j] ^ b[j];
        hi[j] = (a[j] & b[j]) | (u & c[j]);
        lo[j] = u ^ c[j];
    }
}

/* Adds carry (weight 2**k) into the binary count held by planes k, k+1, ...; consumes
   carry. Returns 0, or -1 if the count would need more than K planes. */
static inline int64_t ripple(uint64_t *planes, int64_t K, int64_t pitch, int64_t k, uint64_t *carry, int64_t w)
{
    for (;; k++) {
        if (k == K) return -1;
        uint64_t *p = planes + k * pitch, any = 0;
        for (int64_t j = 0; j < w; j++) {
            uint64_t c = p[j] & carry[j];
            p[j] ^= carry[j];
            carry[j] = c;
            any |= c;
        }
        if (!any) return 0;
    }
}

/* Vertical counts: adds rows a[t] (XOR their other rows), t < T, of nb bytes to
   per-sample counts kept bit-sliced in planes (K, pitch) uint64, pitch >= ceil(nb / 8):
   plane k holds bit k of every sample's count, in the rows' own byte layout.

   Harley-Seal: groups of 16 rows go through a tree of carry-save adders whose running
   sums live in planes 0-3 (ones, twos, fours, eights); only the group's carry of weight
   16 ripples into planes 4 and up. About 6 word operations per row instead of one
   per plane. Smaller groups (8, 4, 2, 1 rows) finish a call the same way at a lower
   level. The count stays Sum_k plane[k] * 2**k throughout.

   Returns 0, or -1 if K planes were too few (planes are then partly updated: the caller
   makes K large enough, >= 5 and more than the bit length of the rows added in all). */
MULTIVERSION
int64_t dyn_vertical_add(uint64_t *planes, int64_t K, int64_t pitch, const uint8_t *a, int64_t stride_a,
                         const uint8_t *b, int64_t stride_b, int successive, int64_t T, int64_t nb)
{
    uint64_t x0[TILE], x1[TILE], t2a[TILE], t2b[TILE], t4a[TILE], t4b[TILE], t8a[TILE], t8b[TILE], t16[TILE];
    int64_t nwords = (nb + 7) / 8;
    if (K < 5) return -1;
    for (int64_t j0 = 0; j0 < nwords; j0 += TILE) {
        int64_t w = nwords - j0 < TILE ? nwords - j0 : TILE;
        int64_t off = 8 * j0, bytes = nb - off < 8 * w ? nb - off : 8 * w;
        uint64_t *p = planes + j0, *ones = p, *twos = p + pitch, *fours = p + 2 * pitch, *eights = p + 3 * pitch;
        const uint8_t *ra = a + off, *rb = b ? b + off : NULL;
        int64_t t = 0;
#define ROW(i) ra + (i) * stride_a, other(ra, stride_a, rb, stride_b, successive, i), bytes, w
#define PAIR(i, out) fetch(x0, ROW(i)); fetch(x1, ROW((i) + 1)); csa(out, ones, ones, x0, x1, w)
#define QUAD(i, out) PAIR(i, t2a); PAIR((i) + 2, t2b); csa(out, twos, twos, t2a, t2b, w)
#define OCT(i, out) QUAD(i, t4a); QUAD((i) + 4, t4b); csa(out, fours, fours, t4a, t4b, w)
#define CARRY(level, c) if (ripple(p, K, pitch, level, c, w) < 0) return -1
        for (; t + 16 <= T; t += 16) {
            OCT(t, t8a); OCT(t + 8, t8b); csa(t16, eights, eights, t8a, t8b, w);
            CARRY(4, t16);
        }
        if (t + 8 <= T) { OCT(t, t8a); CARRY(3, t8a); t += 8; }
        if (t + 4 <= T) { QUAD(t, t4a); CARRY(2, t4a); t += 4; }
        if (t + 2 <= T) { PAIR(t, t2a); CARRY(1, t2a); t += 2; }
        if (t < T) { fetch(x0, ROW(t)); CARRY(0, x0); }
#undef ROW
#undef PAIR
#undef QUAD
#undef OCT
#undef CARRY
    }
    return 0;
}

/* Counts out of bit-sliced planes: out[s] = Sum_k bit s of plane k * 2**k, for s < n and
   K <= 16 planes (counts below 65,536). Per byte of a plane, a table spreads its 8 bits
   over the 8 byte lanes of a word; planes 0-7 then sum into the low bytes of 8 counts,
   planes 8-15 into the high bytes, without carries between lanes. */
void dyn_planes_to_counts(const uint64_t *planes, int64_t K, int64_t pitch, int64_t n, int64_t *out)
{
    uint64_t spread[256];
    for (int v = 0; v < 256; v++) {
        uint64_t w = 0;
        for (int j = 0; j < 8; j++) w |= (uint64_t)((v >> (7 - j)) & 1) << (8 * j); /* lane j: sample j */
        spread[v] = w;
    }
    const uint8_t *p = (const uint8_t *)planes;
    int64_t prow = 8 * pitch; /* bytes per plane */
    for (int64_t i = 0; i < (n + 7) / 8; i++) {
        uint64_t lo = 0, hi = 0;
        for (int64_t k = 0; k < K && k < 8; k++) lo += spread[p[k * prow + i]] << k;
        for (int64_t k = 8; k < K && k < 16; k++) hi += spread[p[k * prow + i]] << (k - 8);
        int64_t m = n - 8 * i < 8 ? n - 8 * i : 8;
        for (int64_t j = 0; j < m; j++)
            out[8 * i + j] = (int64_t)(((lo >> (8 * j)) & 0xff) | (((hi >> (8 * j)) & 0xff) << 8));
    }
}

#if defined(__unix__) || defined(__APPLE__)
/* out[i] = the byte at file offset offsets[i], one pread each: barcodes want a few bytes
   per row, each on a page of its own. In Python every pread also hands the GIL back and
   forth (two threads then run no faster than one); here the whole loop runs without it.
   Returns how many bytes were read: fewer than n means an error or the end of the file. */
int64_t dyn_gather(int fd, const int64_t *offsets, int64_t n, uint8_t *out)
{
    for (int64_t i = 0; i < n; i++)
        if (pread(fd, out + i, 1, (off_t)offsets[i]) != 1) return i;
    return n;
}
#endif
