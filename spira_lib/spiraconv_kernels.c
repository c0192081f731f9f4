/* SpiraConv v2's CPU path, fused: one pass over memory where the torch ops take a dozen.
 *
 * Built and loaded by spira_lib/spiraconv_kernels.py (plain C, ctypes, no torch headers).
 * Every function computes exactly what the torch code in spira_lib/spiraconv_cpu.py
 * computes, in the same formulas, one element at a time:
 *
 *   mish(a)   = a * t,  t = n / (n + 2),  n = e (e + 2),  e = exp(min(a, 20))  (exp: see exp_le20)
 *   mish'(a)  = (a - a t t) * s + t,  s = e / (e + 1)
 *   pool      = the larger of frames 2i and 2i+1 (ties keep 2i, as max_pool2d does)
 *   dropout   = out * keep * scale
 *
 * Layouts are NCHW-contiguous float32: [B, C, T, F] with F the MFCC coefficient.
 * Work goes plane by plane (one (b, c) at a time, T x F floats, cache-sized):
 * the arithmetic runs as long contiguous loops over the plane, which the
 * compiler vectorises; only the
 * pairing of frames walks row by row. Planes are independent: OpenMP splits them.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* exp(x) for x <= 20 (callers clamp), to ~1 ulp: 2^n * p(r), x = n ln2 + r, |r| <= ln2/2, p a degree-6
 * Taylor polynomial (error < 2e-8 relative on that range). Inlined so the compiler vectorises the whole
 * loop at the machine's full width; glibc's vector expf is a call per 4 lanes here. Below -87 the result
 * would be subnormal: it returns 0 (torch returns a subnormal; either is 0 to the model). */
static inline float exp_le20(float x) {
    const float n = __builtin_rintf(x * 1.44269504088896341f);
    const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f; /* ln2 split: exact first product */
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { int i; float f; } scale;
    scale.i = ((int)n + 127) << 23;
    return x < -87.0f ? 0.0f : p * scale.f;
}

/* h = mish(a) over n floats. */
static void mish_plane(const float *restrict a, long n, float *restrict h) {
    for (long i = 0; i < n; i++) {
        float x = a[i];
        float e = exp_le20(x < 20.0f ? x : 20.0f);
        float m = (e + 2.0f) * e;
        h[i] = m / (m + 2.0f) * x;
    }
}

/* g_sel = mish'(a_sel) * g (* keep * scale) over n floats. */
static void grad_plane(const float *restrict g, const float *restrict a_sel, const float *restrict keep, float scale,
                       long n, float *restrict ga) {
    for (long i = 0; i < n; i++) {
        float x = a_sel[i];
        float e = exp_le20(x < 20.0f ? x : 20.0f);
        float m = (e + 2.0f) * e;
        float t = m / (m + 2.0f);
        float s = e / (e + 1.0f);
        float v = ((x - x * t * t) * s + t) * g[i];
        ga[i] = keep ? v * keep[i] * scale : v;
    }
}

/* Pool (pairs of frames, the larger mish wins, ties keep the first) and dropout of one plane:
 * a, h [T, F] (pre-activation, mish) -> out [To, F]; a_sel/sel (may be NULL) what backward needs. */
static void pool_plane(const float *restrict a, const float *restrict h, int T, int F, int pool,
                       const float *restrict keep, float scale, float *restrict out, float *restrict a_sel,
                       float *restrict sel) {
    if (!pool) {
        long n = (long)T * F;
        for (long i = 0; i < n; i++) out[i] = keep ? h[i] * keep[i] * scale : h[i];
        if (a_sel) memcpy(a_sel, a, sizeof(float) * n);
        return;
    }
    for (int i = 0; i < T / 2; i++) {
        const float *a0 = a + (long)2 * i * F, *a1 = a0 + F, *h0 = h + (long)2 * i * F, *h1 = h0 + F;
        const long o = (long)i * F;
        for (int f = 0; f < F; f++) {
            int win = h1[f] > h0[f];
            float v = win ? h1[f] : h0[f];
            out[o + f] = keep ? v * keep[o + f] * scale : v;
            if (a_sel) a_sel[o + f] = win ? a1[f] : a0[f];
            if (sel) sel[o + f] = win ? 1.0f : 0.0f;
        }
    }
}

/* Spread the winners' gradient g_sel [To, F] back to frames: ga [T, F], zero where a frame lost
 * (and for an odd last frame, which pooling dropped). */
static void unpool_plane(const float *restrict g_sel, const float *restrict sel, int T, int F, int pool,
                         float *restrict ga) {
    if (!pool) {
        memcpy(ga, g_sel, sizeof(float) * (long)T * F);
        return;
    }
    for (int i = 0; i < T / 2; i++) {
        float *q0 = ga + (long)2 * i * F, *q1 = q0 + F;
        const float *s = sel + (long)i * F, *v = g_sel + (long)i * F;
        for (int f = 0; f < F; f++) {
            q1[f] = s[f] > 0.5f ? v[f] : 0.0f;
            q0[f] = s[f] > 0.5f ? 0.0f : v[f];
        }
    }
    if (T % 2) memset(ga + (long)(T - 1) * F, 0, sizeof(float) * F);
}

/* First block's conv of one plane: a[n] = sum_k w[k] x[n + k d F] + w[K], n over [T', F] flattened. */
static void conv_plane(const float *restrict xb, const float *restrict w, int K, int d, int F, long n,
                       float *restrict a) {
    for (long i = 0; i < n; i++) a[i] = 0.0f;
    for (int k = 0; k < K; k++) {
        const float wk = w[k], *p = xb + (long)k * d * F;
        for (long i = 0; i < n; i++) a[i] += wk * p[i];
    }
    for (long i = 0; i < n; i++) a[i] += w[K];
}

/* First block forward: a = conv (GroupNorm folded into per-sample weights w_ext [B, C, K+1]) of
 * x [B, T, F], then Mish -> pool -> dropout into out [B, C, To, F]. a_sel/sel may be NULL. */
int spira_first_forward(const float *x, const float *w_ext, int B, int C, int K, int T, int F, int d, int pool,
                        const float *keep, float scale, float *out, float *a_sel, float *sel, int threads) {
    const int t_conv = T - d * (K - 1);
    const int t_out = pool ? t_conv / 2 : t_conv;
    const long n = (long)t_conv * F, n_out = (long)t_out * F;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *a = malloc(sizeof(float) * 2 * n);
        if (!a) failed = 1;
#pragma omp for schedule(static)
        for (long bc = 0; bc < (long)B * C; bc++) {
            if (!a) continue;
            conv_plane(x + (bc / C) * (long)T * F, w_ext + bc * (K + 1), K, d, F, n, a);
            mish_plane(a, n, a + n);
            pool_plane(a, a + n, t_conv, F, pool, keep ? keep + bc * n_out : NULL, scale, out + bc * n_out,
                       a_sel ? a_sel + bc * n_out : NULL, sel && pool ? sel + bc * n_out : NULL);
        }
        free(a);
    }
    return failed ? 2 : 0;
}

/* First block backward: the gradient of w_ext [B, C, K+1] from g [B, C, To, F]:
 * g_w[k] = sum_n ga[n] x[n + k d F], g_w[K] = sum_n ga[n], ga = the gradient at the conv output. */
int spira_first_backward(const float *g, const float *x, const float *a_sel, const float *sel, const float *keep,
                         float scale, int B, int C, int K, int T, int F, int d, int pool, float *g_w, int threads) {
    const int t_conv = T - d * (K - 1);
    const int t_out = pool ? t_conv / 2 : t_conv;
    const long n = (long)t_conv * F, n_out = (long)t_out * F;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *buf = malloc(sizeof(float) * (n + n_out));
        if (!buf) failed = 1;
#pragma omp for schedule(static)
        for (long bc = 0; bc < (long)B * C; bc++) {
            if (!buf) continue;
            float *ga = buf, *gs = buf + n;
            const long o = bc * n_out;
            grad_plane(g + o, a_sel + o, keep ? keep + o : NULL, scale, n_out, gs);
            unpool_plane(gs, pool ? sel + o : NULL, t_conv, F, pool, ga);
            const float *xb = x + (bc / C) * (long)T * F;
            for (int k = 0; k <= K; k++) {
                const float *p = xb + (long)k * d * F;
                float acc = 0.0f;
                if (k < K)
                    for (long i = 0; i < n; i++) acc += ga[i] * p[i];
                else
                    for (long i = 0; i < n; i++) acc += ga[i];
                g_w[bc * (K + 1) + k] = acc;
            }
        }
        free(buf);
    }
    return failed ? 2 : 0;
}

/* Later blocks: Mish -> (pool) -> (dropout) of a [R, T, F] (R = B C planes) into [R, To, F]. */
int spira_tail_forward(const float *a, long R, int T, int F, int pool, const float *keep, float scale, float *out,
                       float *a_sel, float *sel, int threads) {
    const int t_out = pool ? T / 2 : T;
    const long n = (long)T * F, n_out = (long)t_out * F;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *h = malloc(sizeof(float) * n);
        if (!h) failed = 1;
#pragma omp for schedule(static)
        for (long r = 0; r < R; r++) {
            if (!h) continue;
            mish_plane(a + r * n, n, h);
            pool_plane(a + r * n, h, T, F, pool, keep ? keep + r * n_out : NULL, scale, out + r * n_out,
                       a_sel ? a_sel + r * n_out : NULL, sel && pool ? sel + r * n_out : NULL);
        }
        free(h);
    }
    return failed ? 2 : 0;
}

/* Gradient w.r.t. a [R, T, F] from g [R, To, F] (see unpool_plane). */
int spira_tail_backward(const float *g, const float *a_sel, const float *sel, const float *keep, float scale, long R,
                        int T, int F, int pool, float *ga, int threads) {
    const int t_out = pool ? T / 2 : T;
    const long n = (long)T * F, n_out = (long)t_out * F;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *gs = malloc(sizeof(float) * n_out);
        if (!gs) failed = 1;
#pragma omp for schedule(static)
        for (long r = 0; r < R; r++) {
            if (!gs) continue;
            grad_plane(g + r * n_out, a_sel + r * n_out, keep ? keep + r * n_out : NULL, scale, n_out, gs);
            unpool_plane(gs, pool ? sel + r * n_out : NULL, T, F, pool, ga + r * n);
        }
        free(gs);
    }
    return failed ? 2 : 0;
}

/* Dropout keep mask in NCHW from uniforms drawn in channels_last order: u [B, N, C] -> keep [B, C, N]. */
int spira_keep_mask(const float *u, int B, long N, int C, float p, float *keep, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long bc = 0; bc < (long)B * C; bc++) {
        const long b = bc / C, c = bc % C;
        const float *src = u + b * N * C + c;
        float *dst = keep + bc * N;
        for (long n = 0; n < N; n++) dst[n] = src[n * C] >= p ? 1.0f : 0.0f;
    }
    return 0;
}
