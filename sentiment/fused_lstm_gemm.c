/* The per-step GEMM of fused_lstm's recurrence, float32, AVX2 + FMA.
 *
 * At every step the recurrence multiplies a few rows (the batch) by the same
 * matrix: h_{t-1} U forward, dz_t U^T backward. A general BLAS packs that
 * matrix into its own layout at every call (OpenBLAS: about 40 % of a
 * 16 x 128 x 512 product on this project's machine). Here the matrix is
 * packed once per sequence (by fused_lstm, in NumPy) and each step runs only
 * the register-tiled kernel: C (M x N) = A (M x K) B (+ C), B packed in
 * panels of 16 columns, panel p holding B[k, 16 p : 16 p + 16] for k = 0..K-1
 * contiguously (columns past N are zeros, and are not stored). A tile is up
 * to 6 rows x 16 columns: 12 accumulators in registers.
 *
 * fused_lstm.py compiles this file once (into PyTensor's compile directory)
 * and uses it only when fl_cpu_ok() says the CPU has AVX2 and FMA; otherwise,
 * or without a C compiler, it calls the BLAS.
 */
#include <immintrin.h>

#define FL_TARGET __attribute__((target("avx2,fma")))

int fl_cpu_ok(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* One tile: rows 0..m-1 of A (row stride lda) times one packed panel bp
 * (K x 16) into C's 16 columns (row stride ldc). (A partial panel goes
 * through a buffer in fl_sgemm_packed: a column count here would make the
 * compiler keep the accumulators in memory, 2x slower.) */
static inline __attribute__((always_inline)) FL_TARGET void
fl_tile(const int m, long K, const float *A, long lda, const float *bp,
        float *C, long ldc, int accumulate)
{
    __m256 c0[6], c1[6];
    for (int i = 0; i < m; i++) {
        c0[i] = _mm256_setzero_ps();
        c1[i] = _mm256_setzero_ps();
    }
    _Pragma("GCC unroll 4")
    for (long k = 0; k < K; k++) {
        const __m256 b0 = _mm256_loadu_ps(bp + 16 * k);
        const __m256 b1 = _mm256_loadu_ps(bp + 16 * k + 8);
        for (int i = 0; i < m; i++) {
            const __m256 a = _mm256_broadcast_ss(A + i * lda + k);
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
        }
    }
    for (int i = 0; i < m; i++) {
        float *c = C + i * ldc;
        if (accumulate) {
            c0[i] = _mm256_add_ps(_mm256_loadu_ps(c), c0[i]);
            c1[i] = _mm256_add_ps(_mm256_loadu_ps(c + 8), c1[i]);
        }
        _mm256_storeu_ps(c, c0[i]);
        _mm256_storeu_ps(c + 8, c1[i]);
    }
}

/* Rows 0..m-1 (m <= 6) times one panel, each row count with its own unrolled tile. */
static FL_TARGET void
fl_tiles(long m, long K, const float *A, long lda, const float *bp, float *C, long ldc,
         int accumulate)
{
    switch (m) {
    case 6: fl_tile(6, K, A, lda, bp, C, ldc, accumulate); break;
    case 5: fl_tile(5, K, A, lda, bp, C, ldc, accumulate); break;
    case 4: fl_tile(4, K, A, lda, bp, C, ldc, accumulate); break;
    case 3: fl_tile(3, K, A, lda, bp, C, ldc, accumulate); break;
    case 2: fl_tile(2, K, A, lda, bp, C, ldc, accumulate); break;
    case 1: fl_tile(1, K, A, lda, bp, C, ldc, accumulate); break;
    }
}

/* C = A B (accumulate = 0) or C += A B (accumulate = 1); B packed as above. */
FL_TARGET void
fl_sgemm_packed(long M, long N, long K, const float *A, long lda, const float *Bp,
                float *C, long ldc, int accumulate)
{
    for (long p = 0; p * 16 < N; p++) {
        const float *bp = Bp + p * K * 16;
        const long n = N - p * 16 < 16 ? N - p * 16 : 16;
        for (long i = 0; i < M; i += 6) {
            const long m = M - i < 6 ? M - i : 6;
            float *c = C + i * ldc + p * 16;
            if (n == 16) {
                fl_tiles(m, K, A + i * lda, lda, bp, c, ldc, accumulate);
            } else {  /* the last, partial panel: through a buffer */
                float tmp[6 * 16];
                fl_tiles(m, K, A + i * lda, lda, bp, tmp, 16, 0);
                for (long r = 0; r < m; r++)
                    for (long j = 0; j < n; j++)
                        c[r * ldc + j] = accumulate ? c[r * ldc + j] + tmp[r * 16 + j]
                                                    : tmp[r * 16 + j];
            }
        }
    }
}
