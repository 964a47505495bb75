/* The GEMMs of fused_lstm, float32, AVX2 + FMA: one order of sums on every CPU.
 *
 * Every element of C is one chain of fused multiply-adds over k = 0, 1, ...,
 * K - 1, started from zero (then added to C when accumulating): the vector
 * lanes hold different columns of C, never parts of one sum. The result is
 * therefore the same bits whatever the vector width, the tile sizes, the
 * number of threads or the CPU (IEEE 754 fused multiply-add is exactly
 * rounded), which a BLAS does not promise: OpenBLAS picks its kernel, and
 * with it the order of the sums, by CPU model (OPENBLAS_CORETYPE).
 *
 * fl_sgemm_packed: at every step the recurrence multiplies a few rows (the
 * batch) by the same matrix: h_{t-1} U forward, dz_t U^T backward. A general
 * BLAS packs that matrix into its own layout at every call (OpenBLAS: about
 * 40 % of a 16 x 128 x 512 product on this project's machine). Here the
 * matrix is packed once per sequence (by fused_lstm) and each step runs only
 * the register-tiled kernel: C (M x N) = A (M x K) B (+ C), B packed in
 * panels of 16 columns, panel p holding B[k, 16 p : 16 p + 16] for k = 0..K-1
 * contiguously (columns past N are zeros, and are not stored). A tile is up
 * to 6 rows x 16 columns: 12 accumulators in registers. The large products
 * (the input projection, dx) use it too, with W packed once per call.
 *
 * fl_sgemm_nn: the same kernel with B unpacked (row-major, a row stride).
 *
 * fl_sgemm_tn: C (M x N) = X^T Y (+ C), X (K x M) and Y (K x N) row-major,
 * unpacked: the weight gradients dW = x^T dz and dU = h^T dz, summed over
 * the K = steps x reviews of a chunk.
 *
 * fused_lstm.py compiles this file once (into PyTensor's compile directory)
 * and uses it only when fl_cpu_ok() says the CPU has AVX2 and FMA; otherwise,
 * or without a C compiler, it calls the BLAS (whose sums may differ by CPU).
 */
#include <immintrin.h>
#include <stdlib.h>

#define FL_TARGET __attribute__((target("avx2,fma")))
#define FL_TARGET512 __attribute__((target("avx512f,avx2,fma")))
#define FL_ROWS 48   /* rows of A kept in cache by fl_sgemm_packed (a multiple of 6 and 8) */
#define FL_DEPTH 256 /* values of k per block in fl_sgemm_tn */

int fl_cpu_ok(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* One tile: rows 0..m-1 of A (A[i, k] at A[i * sa + k * sk]) times 16
 * columns of B (row k at bp + k * ldb: a packed panel has ldb = 16) into C's
 * 16 columns (row stride ldc). (A partial panel goes through a buffer: a
 * column count here would make the compiler keep the accumulators in memory,
 * 2x slower.) */
static inline __attribute__((always_inline)) FL_TARGET void
fl_tile(const int m, long K, const float *A, long sa, long sk, const float *bp, long ldb,
        float *C, long ldc, int accumulate)
{
    /* Named accumulators (an array would be kept in memory by the compiler). */
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#define FL_LOAD(i) if (m > i) { c##i##0 = _mm256_loadu_ps(C + i * ldc); \
                                c##i##1 = _mm256_loadu_ps(C + i * ldc + 8); }
    if (accumulate == 2) {  /* go on with the sums held in C */
        FL_LOAD(0) FL_LOAD(1) FL_LOAD(2) FL_LOAD(3) FL_LOAD(4) FL_LOAD(5)
    }
#define FL_ROW(i) if (m > i) { const __m256 a = _mm256_broadcast_ss(A + i * sa + k * sk); \
                               c##i##0 = _mm256_fmadd_ps(a, b0, c##i##0); \
                               c##i##1 = _mm256_fmadd_ps(a, b1, c##i##1); }
    _Pragma("GCC unroll 4")
    for (long k = 0; k < K; k++) {
        const __m256 b0 = _mm256_loadu_ps(bp + ldb * k);
        const __m256 b1 = _mm256_loadu_ps(bp + ldb * k + 8);
        FL_ROW(0) FL_ROW(1) FL_ROW(2) FL_ROW(3) FL_ROW(4) FL_ROW(5)
    }
#define FL_STORE(i) if (m > i) { float *c = C + i * ldc; \
        if (accumulate == 1) { c##i##0 = _mm256_add_ps(_mm256_loadu_ps(c), c##i##0); \
                               c##i##1 = _mm256_add_ps(_mm256_loadu_ps(c + 8), c##i##1); } \
        _mm256_storeu_ps(c, c##i##0); _mm256_storeu_ps(c + 8, c##i##1); }
    FL_STORE(0) FL_STORE(1) FL_STORE(2) FL_STORE(3) FL_STORE(4) FL_STORE(5)
#undef FL_LOAD
#undef FL_ROW
#undef FL_STORE
}

/* Rows 0..m-1 (m <= 6) times one panel, each row count with its own unrolled tile. */
static FL_TARGET void
fl_tiles(long m, long K, const float *A, long sa, long sk, const float *bp, long ldb,
         float *C, long ldc, int accumulate)
{
    switch (m) {
    case 6: fl_tile(6, K, A, sa, sk, bp, ldb, C, ldc, accumulate); break;
    case 5: fl_tile(5, K, A, sa, sk, bp, ldb, C, ldc, accumulate); break;
    case 4: fl_tile(4, K, A, sa, sk, bp, ldb, C, ldc, accumulate); break;
    case 3: fl_tile(3, K, A, sa, sk, bp, ldb, C, ldc, accumulate); break;
    case 2: fl_tile(2, K, A, sa, sk, bp, ldb, C, ldc, accumulate); break;
    case 1: fl_tile(1, K, A, sa, sk, bp, ldb, C, ldc, accumulate); break;
    }
}

/* C's columns j0..j0+n-1 (n <= 16) for all M rows of A; B's 16 columns
 * from bp (row stride ldb; n < 16: through a buffer of tmp, n columns used). */
static FL_TARGET void
fl_panel(long M, long n, long K, const float *A, long sa, long sk, const float *bp, long ldb,
         float *C, long ldc, int accumulate)
{
    for (long i = 0; i < M; i += 6) {
        const long m = M - i < 6 ? M - i : 6;
        float *c = C + i * ldc;
        if (n == 16) {
            fl_tiles(m, K, A + i * sa, sa, sk, bp, ldb, c, ldc, accumulate);
        } else {
            float tmp[6 * 16] = {0};
            if (accumulate == 2)
                for (long r = 0; r < m; r++)
                    for (long j = 0; j < n; j++)
                        tmp[r * 16 + j] = c[r * ldc + j];
            fl_tiles(m, K, A + i * sa, sa, sk, bp, ldb, tmp, 16, accumulate == 2 ? 2 : 0);
            for (long r = 0; r < m; r++)
                for (long j = 0; j < n; j++)
                    c[r * ldc + j] = accumulate == 1 ? c[r * ldc + j] + tmp[r * 16 + j]
                                                     : tmp[r * 16 + j];
        }
    }
}

/* The same sums with 512-bit vectors, where the CPU has AVX-512: one tile is
 * up to 6 rows x 32 columns, two panels of B (rows at b0 + k * ldb and
 * b1 + k * ldb). Each element is still one chain of fused multiply-adds in
 * the order of k: the results are the AVX2 kernel's, bit for bit. Off with
 * FUSED_LSTM_AVX512=0 (to compare). */
static int fl_avx512 = -1;

static int
fl_use_avx512(void)
{
    if (fl_avx512 < 0) {
        const char *env = getenv("FUSED_LSTM_AVX512");
        __builtin_cpu_init();
        fl_avx512 = __builtin_cpu_supports("avx512f") && !(env && env[0] == '0');
    }
    return fl_avx512;
}

/* The vector width the kernels use here: 512 or 256 bits. */
int fl_vector_bits(void)
{
    return fl_use_avx512() ? 512 : 256;
}

static inline __attribute__((always_inline)) FL_TARGET512 void
fl_tile512(const int m, long K, const float *A, long sa, long sk, const float *b0p,
           const float *b1p, long ldb, float *C, long ldc, int accumulate)
{
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00,
           c61 = c00, c70 = c00, c71 = c00;
#define FL_LOAD(i) if (m > i) { c##i##0 = _mm512_loadu_ps(C + i * ldc); \
                                c##i##1 = _mm512_loadu_ps(C + i * ldc + 16); }
    if (accumulate == 2) {
        FL_LOAD(0) FL_LOAD(1) FL_LOAD(2) FL_LOAD(3) FL_LOAD(4) FL_LOAD(5) FL_LOAD(6) FL_LOAD(7)
    }
#define FL_ROW(i) if (m > i) { const __m512 a = _mm512_set1_ps(A[i * sa + k * sk]); \
                               c##i##0 = _mm512_fmadd_ps(a, b0, c##i##0); \
                               c##i##1 = _mm512_fmadd_ps(a, b1, c##i##1); }
    _Pragma("GCC unroll 4")
    for (long k = 0; k < K; k++) {
        const __m512 b0 = _mm512_loadu_ps(b0p + ldb * k);
        const __m512 b1 = _mm512_loadu_ps(b1p + ldb * k);
        FL_ROW(0) FL_ROW(1) FL_ROW(2) FL_ROW(3) FL_ROW(4) FL_ROW(5) FL_ROW(6) FL_ROW(7)
    }
#define FL_STORE(i) if (m > i) { float *c = C + i * ldc; \
        if (accumulate == 1) { c##i##0 = _mm512_add_ps(_mm512_loadu_ps(c), c##i##0); \
                               c##i##1 = _mm512_add_ps(_mm512_loadu_ps(c + 16), c##i##1); } \
        _mm512_storeu_ps(c, c##i##0); _mm512_storeu_ps(c + 16, c##i##1); }
    FL_STORE(0) FL_STORE(1) FL_STORE(2) FL_STORE(3) FL_STORE(4) FL_STORE(5) FL_STORE(6)
    FL_STORE(7)
#undef FL_LOAD
#undef FL_ROW
#undef FL_STORE
}

/* C's 32 columns from two full panels of B, for all M rows of A: tiles of 8
 * rows (16 accumulators: AVX-512 has 32 vector registers). */
static FL_TARGET512 void
fl_panels512(long M, long K, const float *A, long sa, long sk, const float *b0p,
             const float *b1p, long ldb, float *C, long ldc, int accumulate)
{
    for (long i = 0; i < M; i += 8) {
        const long m = M - i < 8 ? M - i : 8;
        const float *a = A + i * sa;
        float *c = C + i * ldc;
        switch (m) {
        case 8: fl_tile512(8, K, a, sa, sk, b0p, b1p, ldb, c, ldc, accumulate); break;
        case 7: fl_tile512(7, K, a, sa, sk, b0p, b1p, ldb, c, ldc, accumulate); break;
        case 6: fl_tile512(6, K, a, sa, sk, b0p, b1p, ldb, c, ldc, accumulate); break;
        case 5: fl_tile512(5, K, a, sa, sk, b0p, b1p, ldb, c, ldc, accumulate); break;
        case 4: fl_tile512(4, K, a, sa, sk, b0p, b1p, ldb, c, ldc, accumulate); break;
        case 3: fl_tile512(3, K, a, sa, sk, b0p, b1p, ldb, c, ldc, accumulate); break;
        case 2: fl_tile512(2, K, a, sa, sk, b0p, b1p, ldb, c, ldc, accumulate); break;
        case 1: fl_tile512(1, K, a, sa, sk, b0p, b1p, ldb, c, ldc, accumulate); break;
        }
    }
}

/* C = A B (accumulate = 0) or C += A B (accumulate = 1); B packed as above. */
FL_TARGET void
fl_sgemm_packed(long M, long N, long K, const float *A, long lda, const float *Bp,
                float *C, long ldc, int accumulate)
{
    /* Blocks of FL_ROWS rows of A, which stay in cache while every panel of B
     * passes (the order of the sums of one element does not change). */
    for (long i = 0; i < M; i += FL_ROWS) {
        const long mb = M - i < FL_ROWS ? M - i : FL_ROWS;
        long p = 0;
        if (fl_use_avx512())
            for (; (p + 2) * 16 <= N; p += 2)
                fl_panels512(mb, K, A + i * lda, lda, 1, Bp + p * K * 16, Bp + (p + 1) * K * 16,
                             16, C + i * ldc + p * 16, ldc, accumulate);
        for (; p * 16 < N; p++) {
            const long n = N - p * 16 < 16 ? N - p * 16 : 16;
            fl_panel(mb, n, K, A + i * lda, lda, 1, Bp + p * K * 16, 16, C + i * ldc + p * 16,
                     ldc, accumulate);
        }
    }
}

/* C = A B (accumulate = 0), B (K x N) unpacked, row stride ldb: the kernel of
 * fl_sgemm_packed reading the panels of B in place (a panel's row is one
 * cache line; the forward's W and U need no packing). tmp: room for K x 16
 * floats (a partial panel of B, zero-padded, when N is not a multiple of 16). */
FL_TARGET void
fl_sgemm_nn(long M, long N, long K, const float *A, long lda, const float *B, long ldb,
            float *C, long ldc, int accumulate, float *tmp)
{
    const long full = N / 16 * 16;
    if (full < N)
        for (long k = 0; k < K; k++)
            for (long jj = 0; jj < 16; jj++)
                tmp[k * 16 + jj] = full + jj < N ? B[k * ldb + full + jj] : 0.0f;
    for (long i = 0; i < M; i += FL_ROWS) {
        const long mb = M - i < FL_ROWS ? M - i : FL_ROWS;
        long j = 0;
        if (fl_use_avx512())
            for (; j + 32 <= N; j += 32)
                fl_panels512(mb, K, A + i * lda, lda, 1, B + j, B + j + 16, ldb,
                             C + i * ldc + j, ldc, accumulate);
        for (; j < N; j += 16) {
            const long n = N - j < 16 ? N - j : 16;
            fl_panel(mb, n, K, A + i * lda, lda, 1, n == 16 ? B + j : tmp, n == 16 ? ldb : 16,
                     C + i * ldc + j, ldc, accumulate);
        }
    }
}

/* C = X^T Y (accumulate = 0) or C += X^T Y, X (K x M, row stride ldx),
 * Y (K x N, row stride ldy); tmp: room for K x 16 floats (a partial panel of
 * Y, zero-padded, when N is not a multiple of 16). */
FL_TARGET void
fl_sgemm_tn(long M, long N, long K, const float *X, long ldx, const float *Y, long ldy,
            float *C, long ldc, int accumulate, float *tmp)
{
    /* Blocks of FL_DEPTH values of k: each element's chain of sums is stored in C
     * at the end of a block and goes on from there in the next (the same sums,
     * in the same order, as one chain). */
    if (K > FL_DEPTH && accumulate != 1) {
        for (long k = 0; k < K; k += FL_DEPTH) {
            const long kb = K - k < FL_DEPTH ? K - k : FL_DEPTH;
            fl_sgemm_tn(M, N, kb, X + k * ldx, ldx, Y + k * ldy, ldy, C, ldc,
                        k == 0 ? accumulate : 2, tmp);
        }
        return;
    }
    long j0 = 0;
    if (fl_use_avx512())
        for (; j0 + 32 <= N; j0 += 32)
            fl_panels512(M, K, X, 1, ldx, Y + j0, Y + j0 + 16, ldy, C + j0, ldc, accumulate);
    for (long j = j0; j < N; j += 16) {
        const long n = N - j < 16 ? N - j : 16;
        const float *bp = Y + j;
        long ldb = ldy;
        if (n < 16) {
            for (long k = 0; k < K; k++)
                for (long jj = 0; jj < 16; jj++)
                    tmp[k * 16 + jj] = jj < n ? Y[k * ldy + j + jj] : 0.0f;
            bp = tmp;
            ldb = 16;
        }
        fl_panel(M, n, K, X, 1, ldx, bp, ldb, C + j, ldc, accumulate);
    }
}
