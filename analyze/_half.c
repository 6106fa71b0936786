/* Per-example sums over epochs of float16 records (prob, margin), for the training-dynamics
 * analyses (analyze/half.py): one pass that converts, skips NaN (not presented) and adds.
 * numpy's float16 -> float32 conversion alone costs ~3.5 ns a value (no SIMD); this whole
 * pass ~1 ns. Plain C99, no intrinsics: the conversion is exact (bits shifted into a float,
 * times 2^112 re-biases the exponent; subnormals come out right, 0x7c00 is infinity).
 */
#include <stdint.h>
#include <string.h>
#include <math.h>

int dyn_half_version(void) { return 1; }

static inline float half_to_float(uint16_t h)
{
    uint32_t em = (uint32_t)(h & 0x7fff), bits = em << 13, sign = (uint32_t)(h & 0x8000) << 16;
    float f;
    memcpy(&f, &bits, 4);
    f *= 0x1p112f;
    if (em >= 0x7c00)
        f = INFINITY;
    memcpy(&bits, &f, 4);
    bits |= sign;
    memcpy(&f, &bits, 4);
    return f;
}

/* x: rows of n float16 bit patterns, `stride` values apart. For every non-NaN value:
 * sum[i] += v, sq[i] += v*v (when sq), count[i] += 1; and, when bits (packed correctness, bit
 * order big, `bits_stride` bytes a row) is given, correct[i] += its bit. */
void dyn_half_accumulate(const uint16_t *x, int64_t rows, int64_t stride, int64_t n,
                         double *sum, double *sq, int32_t *count,
                         const uint8_t *bits, int64_t bits_stride, int32_t *correct)
{
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *row = x + r * stride;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = row[i];
            if ((h & 0x7fff) > 0x7c00)
                continue; /* NaN: not presented */
            double v = (double)half_to_float(h);
            sum[i] += v;
            if (sq)
                sq[i] += v * v;
            count[i] += 1;
        }
        if (bits) {
            const uint8_t *b = bits + r * bits_stride;
            for (int64_t i = 0; i < n; i++) {
                uint16_t h = row[i];
                correct[i] += ((h & 0x7fff) <= 0x7c00) & (b[i >> 3] >> (7 - (i & 7)));
            }
        }
    }
}

/* Forgetting events, rows in epoch order. bits: packed correctness rows (bit order big);
 * presence: float16 rows whose NaN marks an example not presented (NULL: all presented).
 * State per example: last (correct at its latest presentation), ever (correct at some),
 * events (1 -> 0 between consecutive presentations), before (rows before the first correct
 * one), presentations. The same as ForgettingAccumulator.add in analyze/measures/dynamics.py. */
void dyn_forgetting_rows(const uint8_t *bits, int64_t rows, int64_t bits_stride, const uint16_t *presence,
                         int64_t presence_stride, int64_t n, uint8_t *last, uint8_t *ever, int32_t *events,
                         int32_t *before, int32_t *presentations)
{
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *b = bits + r * bits_stride;
        const uint16_t *p = presence ? presence + r * presence_stride : NULL;
        for (int64_t i = 0; i < n; i++) {
            int pres = p ? ((p[i] & 0x7fff) <= 0x7c00) : 1;
            int c = ((b[i >> 3] >> (7 - (i & 7))) & 1) & pres;
            events[i] += pres & last[i] & !c;
            last[i] = pres ? (uint8_t)c : last[i];
            ever[i] |= (uint8_t)c;
            before[i] += !ever[i];
            presentations[i] += pres;
        }
    }
}
