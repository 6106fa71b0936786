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

/* x: rows of n float16 bit patterns, `stride` values apart. For every non-NaN value:
 * sum[i] += v, sq[i] += v*v (when sq), count[i] += 1; and, when bits (packed correctness, bit
 * order big, `bits_stride` bytes a row) is given, correct[i] += its bit. */
void dyn_half_accumulate(const uint16_t *restrict x, int64_t rows, int64_t stride, int64_t n,
                         double *restrict sum, double *restrict sq, int32_t *restrict count,
                         const uint8_t *restrict bits, int64_t bits_stride, int32_t *restrict correct)
{
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *row = x + r * stride;
        if (sq) { /* branch-free inner loops, so that the compiler vectorizes them */
            for (int64_t i = 0; i < n; i++) {
                uint16_t h = row[i];
                int ok = (h & 0x7fff) <= 0x7c00; /* NaN: not presented */
                float f = half_to_float(h & (uint16_t)-ok);
                sum[i] += (double)f;
                sq[i] += (double)f * (double)f;
                count[i] += ok;
            }
        } else {
            for (int64_t i = 0; i < n; i++) {
                uint16_t h = row[i];
                int ok = (h & 0x7fff) <= 0x7c00;
                sum[i] += (double)half_to_float(h & (uint16_t)-ok);
                count[i] += ok;
            }
        }
        if (bits) {
            const uint8_t *b = bits + r * bits_stride;
            int64_t whole = n / 8;
            for (int64_t j = 0; j < whole; j++) { /* a byte at a time: 8 samples */
                uint32_t byte = b[j];
                for (int k = 0; k < 8; k++) {
                    uint16_t h = row[8 * j + k];
                    correct[8 * j + k] += ((h & 0x7fff) <= 0x7c00) & (byte >> (7 - k)) & 1;
                }
            }
            for (int64_t i = 8 * whole; i < n; i++) {
                uint16_t h = row[i];
                correct[i] += ((h & 0x7fff) <= 0x7c00) & (b[i >> 3] >> (7 - (i & 7))) & 1;
            }
        }
    }
}

/* Forgetting events, rows in epoch order. bits: packed correctness rows (bit order big);
 * presence: float16 rows whose NaN marks an example not presented (NULL: all presented).
 * State per example: last (correct at its latest presentation), ever (correct at some),
 * events (1 -> 0 between consecutive presentations), before (rows before the first correct
 * one), presentations. The same as ForgettingAccumulator.add in analyze/measures/dynamics.py. */
#define FORGET(i, bit, pres)                                                        \
    do {                                                                            \
        uint8_t c_ = (uint8_t)((bit) & (pres)), p_ = (uint8_t)(pres);               \
        events[i] += p_ & last[i] & (c_ ^ 1);                                       \
        last[i] = (uint8_t)((last[i] & (p_ ^ 1)) | c_); /* not presented: kept */   \
        ever[i] |= c_;                                                              \
        before[i] += ever[i] ^ 1;                                                   \
        presentations[i] += p_;                                                     \
    } while (0)

void dyn_forgetting_rows(const uint8_t *restrict bits, int64_t rows, int64_t bits_stride,
                         const uint16_t *restrict presence, int64_t presence_stride, int64_t n,
                         uint8_t *restrict last, uint8_t *restrict ever, int32_t *restrict events,
                         int32_t *restrict before, int32_t *restrict presentations)
{
    int64_t whole = n / 8;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *b = bits + r * bits_stride;
        if (presence) { /* a byte of bits at a time: 8 samples, branch-free */
            const uint16_t *p = presence + r * presence_stride;
            for (int64_t j = 0; j < whole; j++) {
                uint32_t byte = b[j];
                for (int k = 0; k < 8; k++)
                    FORGET(8 * j + k, (byte >> (7 - k)) & 1, (p[8 * j + k] & 0x7fff) <= 0x7c00);
            }
            for (int64_t i = 8 * whole; i < n; i++)
                FORGET(i, (b[i >> 3] >> (7 - (i & 7))) & 1, (p[i] & 0x7fff) <= 0x7c00);
        } else {
            for (int64_t j = 0; j < whole; j++) {
                uint32_t byte = b[j];
                for (int k = 0; k < 8; k++)
                    FORGET(8 * j + k, (byte >> (7 - k)) & 1, 1);
            }
            for (int64_t i = 8 * whole; i < n; i++)
                FORGET(i, (b[i >> 3] >> (7 - (i & 7))) & 1, 1);
        }
    }
}
