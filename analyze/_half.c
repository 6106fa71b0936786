/* Per-example passes over epochs for the training-dynamics analyses (analyze/half.py): sums of
 * float16 records (prob, margin) with NaN (not presented) skipped, and forgetting events from
 * packed correctness bits. numpy's float16 -> float32 conversion alone costs ~3.5 ns a value (no
 * SIMD); these passes well under 1 ns. Plain C99 (SSE2 where the compiler has it): the float16
 * conversion is exact (bits shifted into a float, times 2^112 re-biases the exponent; subnormals
 * come out right, 0x7c00 is infinity).
 *
 * Both walk the rows they are given in column blocks: every row of a block before the next
 * block, so that the block's per-example state stays in the L1 cache while the rows pass (row
 * by row over all N examples, the state, 20-30 MB at ImageNet's size, went to memory and back
 * for every row). Each example still sees its rows in order: the sums are the same.
 */
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define DYN_SSE2 1
#endif

int dyn_half_version(void) { return 2; }

static int simd = 1;
void dyn_half_simd(int on) { simd = on; } /* 0: the plain C loops (the tests compare both) */

#define BLOCK 1024 /* examples per column block (a multiple of 64) */

static inline float half_to_float(uint16_t h)
{
    uint32_t em = (uint32_t)(h & 0x7fff), bits = em << 13, top = -(uint32_t)(em >= 0x7c00); /* inf: all ones */
    float f;
    memcpy(&f, &bits, 4);
    f *= 0x1p112f;
    memcpy(&bits, &f, 4);
    bits = (bits & ~top) | (0x7f800000u & top);
    bits |= (uint32_t)(h & 0x8000) << 16;
    memcpy(&f, &bits, 4);
    return f;
}

/* One row's values i = j0..j1-1 (j0 a multiple of 8) into the sums; b: the row's packed
 * correctness bits, or NULL. Branch-free, so that the compiler vectorizes it. */
static void add_row(const uint16_t *restrict row, int64_t j0, int64_t j1, double *restrict sum,
                    double *restrict sq, int32_t *restrict count, const uint8_t *restrict b,
                    int32_t *restrict correct)
{
    uint8_t one[BLOCK]; /* example i's bit, 0/1: each byte spread to 8 bytes by a multiply */
    for (int64_t j = j0 / 8; b && j < (j1 + 7) / 8; j++) {
        uint64_t v = ((uint64_t)b[j] * 0x8040201008040201ull >> 7) & 0x0101010101010101ull;
        memcpy(one + 8 * j - j0, &v, 8); /* little-endian: byte k is bit 7 - k */
    }
    for (int64_t i = j0; i < j1; i++) {
        uint16_t h = row[i];
        int ok = (h & 0x7fff) <= 0x7c00; /* NaN: not presented */
        double v = (double)half_to_float(h & (uint16_t)-ok);
        sum[i] += v;
        if (sq)
            sq[i] += v * v;
        count[i] += ok;
        if (b)
            correct[i] += ok & one[i - j0];
    }
}

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#define DYN_F16C 1
/* The same with the CPU's float16 conversion (F16C, every AVX2 CPU has it), 8 values at a time:
 * about twice as fast. The sums are added in the same order, so they are the same. */
__attribute__((target("avx2,f16c"))) static void add_row_f16c(const uint16_t *restrict row, int64_t j0, int64_t j1,
                                                              double *restrict sum, double *restrict sq,
                                                              int32_t *restrict count, const uint8_t *restrict b,
                                                              int32_t *restrict correct)
{
    const __m256i lanes = _mm256_setr_epi32(0x80, 0x40, 0x20, 0x10, 8, 4, 2, 1); /* bit order big */
    int64_t i = j0;
    for (; i + 8 <= j1; i += 8) {
        __m256 f = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + i)));
        __m256 ok = _mm256_cmp_ps(f, f, _CMP_ORD_Q); /* all ones where not NaN */
        __m256i okm = _mm256_castps_si256(ok);
        f = _mm256_and_ps(f, ok);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(f)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
        _mm256_storeu_pd(sum + i, _mm256_add_pd(_mm256_loadu_pd(sum + i), lo));
        _mm256_storeu_pd(sum + i + 4, _mm256_add_pd(_mm256_loadu_pd(sum + i + 4), hi));
        if (sq) {
            _mm256_storeu_pd(sq + i, _mm256_add_pd(_mm256_loadu_pd(sq + i), _mm256_mul_pd(lo, lo)));
            _mm256_storeu_pd(sq + i + 4, _mm256_add_pd(_mm256_loadu_pd(sq + i + 4), _mm256_mul_pd(hi, hi)));
        }
        __m256i *c = (__m256i *)(count + i);
        _mm256_storeu_si256(c, _mm256_sub_epi32(_mm256_loadu_si256(c), okm));
        if (b) { /* the byte of these 8 examples: all ones where its bit is set */
            __m256i set = _mm256_and_si256(_mm256_set1_epi32(b[i >> 3]), lanes);
            __m256i *k = (__m256i *)(correct + i);
            set = _mm256_and_si256(_mm256_cmpeq_epi32(set, lanes), okm);
            _mm256_storeu_si256(k, _mm256_sub_epi32(_mm256_loadu_si256(k), set));
        }
    }
    add_row(row, i, j1, sum, sq, count, b, correct);
}
#endif

/* x: rows of n float16 bit patterns, `stride` values apart. For every non-NaN value:
 * sum[i] += v, sq[i] += v*v (when sq), count[i] += 1; and, when bits (packed correctness, bit
 * order big, `bits_stride` bytes a row) is given, correct[i] += its bit. */
void dyn_half_accumulate(const uint16_t *restrict x, int64_t rows, int64_t stride, int64_t n,
                         double *restrict sum, double *restrict sq, int32_t *restrict count,
                         const uint8_t *restrict bits, int64_t bits_stride, int32_t *restrict correct)
{
    int f16c = 0;
#ifdef DYN_F16C
    f16c = simd && __builtin_cpu_supports("avx2"); /* F16C came before AVX2 on Intel's and AMD's CPUs */
#endif
    for (int64_t j0 = 0; j0 < n; j0 += BLOCK) {
        int64_t j1 = n - j0 < BLOCK ? n : j0 + BLOCK;
        for (int64_t r = 0; r < rows; r++) {
            const uint16_t *row = x + r * stride;
            const uint8_t *b = bits ? bits + r * bits_stride : 0;
#ifdef DYN_F16C
            if (f16c) {
                add_row_f16c(row, j0, j1, sum, sq, count, b, correct);
                continue;
            }
#endif
            add_row(row, j0, j1, sum, sq, count, b, correct);
        }
    }
}

/* Forgetting state, 64 examples a word, bit i of word w being example 64 w + i: last (correct
 * at its latest presentation), ever (correct at some); the counts bit-sliced, k planes a word
 * (planes[w * k + j] holds bit j of each of the word's 64 counts): events (1 -> 0 between
 * consecutive presentations) and shown (presentations); first[i]: the row of example i's first
 * correct presentation (-1 before). Adding a word of ones to k planes is k ANDs and XORs for 64
 * counts, instead of 64 increments of separate counters. */

static inline uint64_t reverse_in_bytes(uint64_t x) /* stored bit order (big) -> example order */
{
    x = ((x >> 1) & 0x5555555555555555ull) | ((x & 0x5555555555555555ull) << 1);
    x = ((x >> 2) & 0x3333333333333333ull) | ((x & 0x3333333333333333ull) << 2);
    return ((x >> 4) & 0x0f0f0f0f0f0f0f0full) | ((x & 0x0f0f0f0f0f0f0f0full) << 4);
}

static inline uint64_t load_bits(const uint8_t *row, int64_t w, int64_t width)
{
    uint64_t v = 0; /* little-endian assumed (half.py checks): byte j of the word is bytes[8 w + j] */
    int64_t have = width - 8 * w;
    memcpy(&v, row + 8 * w, have < 8 ? (size_t)have : 8);
    return reverse_in_bytes(v);
}

static inline uint64_t present(const uint16_t *h, int64_t m) /* bit i: h[i] is not NaN, i < m <= 64 */
{
    uint64_t out = 0;
#ifdef DYN_SSE2
    if (m == 64) {
        const __m128i mag = _mm_set1_epi16(0x7fff), inf = _mm_set1_epi16(0x7c00);
        for (int q = 0; q < 4; q++) {
            __m128i a = _mm_loadu_si128((const __m128i *)(h + 16 * q));
            __m128i b = _mm_loadu_si128((const __m128i *)(h + 16 * q + 8));
            a = _mm_cmpgt_epi16(_mm_and_si128(a, mag), inf);
            b = _mm_cmpgt_epi16(_mm_and_si128(b, mag), inf);
            uint32_t nan = (uint32_t)_mm_movemask_epi8(_mm_packs_epi16(a, b));
            out |= (uint64_t)(~nan & 0xffffu) << (16 * q);
        }
        return out;
    }
#endif
    for (int64_t i = 0; i < m; i++)
        out |= (uint64_t)((h[i] & 0x7fff) <= 0x7c00) << i;
    return out;
}

static inline void add_word(uint64_t *planes, int64_t k, uint64_t carry)
{
    for (int64_t j = 0; j < k; j++) {
        uint64_t t = planes[j] & carry;
        planes[j] ^= carry;
        carry = t;
    }
}

static inline int lowest_bit(uint64_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(x);
#else
    int i = 0;
    while (!(x & 1)) { x >>= 1; i++; }
    return i;
#endif
}

/* Rows in epoch order, the first being row `row0` of the accumulator. bits: packed correctness
 * rows (bit order big), `bits_stride` bytes apart; which examples were presented: float16 rows
 * whose NaN marks one not presented (presence), or packed rows as bits (shown_bits), or neither
 * (all presented). k planes must hold the largest count. */
void dyn_forgetting_words(const uint8_t *restrict bits, int64_t rows, int64_t bits_stride,
                          const uint16_t *restrict presence, int64_t presence_stride,
                          const uint8_t *restrict shown_bits, int64_t shown_stride, int64_t n, int64_t row0,
                          uint64_t *restrict last, uint64_t *restrict ever, uint64_t *restrict events,
                          uint64_t *restrict shown, int64_t k, int32_t *restrict first)
{
    int64_t width = (n + 7) / 8, words = (n + 63) / 64;
    for (int64_t w0 = 0; w0 < words; w0 += BLOCK / 64) {
        int64_t w1 = words - w0 < BLOCK / 64 ? words : w0 + BLOCK / 64;
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *b = bits + r * bits_stride;
            const uint16_t *p = presence ? presence + r * presence_stride : 0;
            const uint8_t *s = shown_bits ? shown_bits + r * shown_stride : 0;
            for (int64_t w = w0; w < w1; w++) {
                int64_t m = n - 64 * w < 64 ? n - 64 * w : 64;
                uint64_t all = m == 64 ? ~0ull : (1ull << m) - 1;
                uint64_t pr = p ? present(p + 64 * w, m) : s ? load_bits(s, w, width) & all : all;
                uint64_t c = load_bits(b, w, width) & pr;
                uint64_t forgot = last[w] & pr & ~c, learned = c & ~ever[w];
                last[w] = (last[w] & ~pr) | c; /* not presented: kept */
                ever[w] |= c;
                for (; learned; learned &= learned - 1)
                    first[64 * w + lowest_bit(learned)] = (int32_t)(row0 + r);
                add_word(events + w * k, k, forgot);
                add_word(shown + w * k, k, pr);
            }
        }
    }
}

/* The counts of dyn_forgetting_words' planes, one per example. */
void dyn_planes_counts(const uint64_t *restrict planes, int64_t k, int64_t n, int32_t *restrict out)
{
    for (int64_t i = 0; i < n; i++) {
        const uint64_t *p = planes + (i >> 6) * k;
        int32_t c = 0;
        for (int64_t j = 0; j < k; j++)
            c |= (int32_t)((p[j] >> (i & 63)) & 1) << j;
        out[i] = c;
    }
}

/* The order of a stable sort of n < 2^31 doubles, NaN last (numpy's argsort(kind="stable"),
 * whose timsort takes ~150 ns an element on a million): an LSD radix sort, 11 bits a pass, of
 * keys whose unsigned order is the doubles' (sign bit flipped for positives, every bit for
 * negatives; -0 as +0, every NaN alike and above +inf); a pass whose digit every key shares is
 * skipped. Writes order[i] (the i-th smallest's position) and/or rank[position] = i + 1 (either
 * may be NULL); keys, spare_keys, idx, spare_idx are n scratch elements each. */
#define RADIX 11
#define BUCKETS (1 << RADIX)
#define PASSES 6 /* 6 x 11 >= 64 */

static inline uint64_t sort_key(double v)
{
    uint64_t u;
    if (v != v)
        return ~0ull;
    if (v == 0)
        v = 0; /* -0 */
    memcpy(&u, &v, 8);
    return u ^ ((u >> 63) ? ~0ull : 0x8000000000000000ull);
}

void dyn_argsort_f64(const double *restrict x, int64_t n, int64_t *restrict order, int64_t *restrict rank,
                     uint64_t *restrict keys, uint64_t *restrict spare_keys, int32_t *restrict idx,
                     int32_t *restrict spare_idx)
{
    int64_t count[PASSES][BUCKETS];
    memset(count, 0, sizeof count);
    for (int64_t i = 0; i < n; i++) {
        uint64_t u = sort_key(x[i]);
        keys[i] = u;
        idx[i] = (int32_t)i;
        for (int d = 0; d < PASSES; d++)
            count[d][(u >> (RADIX * d)) & (BUCKETS - 1)]++;
    }
    uint64_t *k0 = keys, *k1 = spare_keys;
    int32_t *o0 = idx, *o1 = spare_idx;
    for (int d = 0; d < PASSES && n > 0; d++) {
        int shift = RADIX * d;
        if (count[d][(k0[0] >> shift) & (BUCKETS - 1)] == n)
            continue; /* every key has this digit: the pass would change nothing */
        int64_t at = 0;
        for (int b = 0; b < BUCKETS; b++) {
            int64_t c = count[d][b];
            count[d][b] = at;
            at += c;
        }
        for (int64_t i = 0; i < n; i++) {
            int64_t to = count[d][(k0[i] >> shift) & (BUCKETS - 1)]++;
            k1[to] = k0[i];
            o1[to] = o0[i];
        }
        uint64_t *tk = k0; k0 = k1; k1 = tk;
        int32_t *to = o0; o0 = o1; o1 = to;
    }
    for (int64_t i = 0; order && i < n; i++)
        order[i] = o0[i];
    for (int64_t i = 0; rank && i < n; i++)
        rank[o0[i]] = i + 1;
}
