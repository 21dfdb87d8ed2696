/* The fused CPU decode step of engine/train/model.py's TransformerLM: one token in, next-token logits out.
 *
 * It computes exactly what the TorchScript `decode(token, pos)` computes, over the same tensors (the
 * loaded module's weights and its KV ring buffers, bound by pointer: no copy), in one call instead of
 * ~150 interpreted ops. Float32, batch 1. Where it is faster than TorchScript on a small CPU:
 *   - no interpreter or op dispatch (that alone was ~0.1 ms of a 0.45 ms step);
 *   - attention as one pass over the window per thread, all query heads of a kv head per cache row
 *     read (multi-query attention reads the cache once, not once per head), split by position across
 *     threads and merged flash-decoding style (max, sum, weighted values per thread);
 *   - exp and the tanh-GELU vectorised (a polynomial exp; libm's scalar expf/tanhf cost more than the
 *     matrix-vector products);
 *   - one OpenMP parallel region for the whole step, 5 barriers per layer, instead of a fork and join
 *     per operator.
 *
 * Threads: OpenMP, and the same OpenMP runtime as torch's (the library needs libgomp.so.1, which torch
 * has already loaded when engine/native/kernel.py loads this), so the kernel and torch's own operators
 * share one pool of threads: two pools spinning on a 2-core machine deschedule each other. threads = 1
 * runs on the caller alone: no region, no barriers.
 *
 * Layouts (see the model): linear weights (in, out) row-major; each layer's KV ring `kv` is (2S, 2 kv hs):
 * row r = [k (kv hs) | v (kv hs)] of the token in slot r % S, every token written at slot and slot + S;
 * `alibi` is (n_heads, window) with alibi[h][window - 1 - d] = -slope_h * d.
 *
 * No Python, no torch headers: engine/native/kernel.py loads it with ctypes.
 */
#define _GNU_SOURCE
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ABI_VERSION 2
#define MAX_THREADS 64
#define LN_EPS 1e-5f
#define ALIGN 64

enum { CFG_VOCAB, CFG_D_MODEL, CFG_LAYERS, CFG_HEADS, CFG_KV_HEADS, CFG_D_FF, CFG_WINDOW, CFG_SLOTS, CFG_N };
enum { L_LN1_W, L_LN1_B, L_ATTN_W, L_ATTN_B, L_PROJ_W, L_LN2_W, L_LN2_B, L_FC_W, L_FC_B, L_FC2_W, L_KV, L_N };
enum { G_WTE, G_LNF_W, G_LNF_B, G_ALIBI, G_COND, G_N }; /* then L_N pointers per layer */

typedef struct {
    const float *ln1_w, *ln1_b, *attn_w, *attn_b, *proj_w, *ln2_w, *ln2_b, *fc_w, *fc_b, *fc2_w;
    float *kv;
} layer_t;

typedef struct {
    float *h;      /* (max width): layer-norm output; each thread computes its own copy */
    float *acc;    /* (max width): matrix-vector accumulators of this thread's columns */
    float *scores; /* (n_heads, window): this thread's attention scores, then probabilities */
    float *m, *l;  /* (n_heads): this thread's running max and sum of exp */
    float *o;      /* (n_heads, hs): this thread's weighted sum of values */
    float *y;      /* (d_model): attention output, merged (each thread its own copy) */
} scratch_t;

typedef struct decoder {
    int vocab, C, L, nh, nkv, group, hs, kvs, F, W, S, T, width;
    float scale;
    const float *wte, *lnf_w, *lnf_b, *alibi, *cond;
    layer_t *layers;
    float *x, *qkv, *f; /* shared: residual (C), fused q|k|v (C + 2 kvs), hidden (F) */
    scratch_t sc[MAX_THREADS];
    /* the current job: a decode step, or the floor's mat-vec */
    int job;
    const float *mv_w, *mv_x;
    float *mv_y;
    int mv_in, mv_out;
    int token;
    int64_t pos, origin;
    float *logits;
} decoder_t;

/* ---- small helpers ------------------------------------------------------------------------------ */
static float *alloc_floats(size_t n) {
    size_t bytes = ((n * sizeof(float) + ALIGN - 1) / ALIGN) * ALIGN;
    float *p = aligned_alloc(ALIGN, bytes ? bytes : ALIGN);
    if (p) memset(p, 0, bytes ? bytes : ALIGN);
    return p;
}

/* this thread's share [*a, *b) of n items, in chunks that are multiples of `align` */
static void share(int n, int tid, int T, int align, int *a, int *b) {
    int chunk = (n + T - 1) / T;
    chunk = ((chunk + align - 1) / align) * align;
    int lo = tid * chunk;
    *a = lo < n ? lo : n;
    *b = lo + chunk < n ? lo + chunk : n;
}

/* all threads of the team meet here (an orphaned OpenMP barrier: called inside the step's region) */
static inline void team_barrier(int nt) {
    if (nt > 1) {
#pragma omp barrier
    }
}

/* exp(x) for the whole float range: Cephes' expf polynomial after range reduction by ln 2, written
 * branch-free so loops over it vectorise (libm's expf does not). Relative error ~2e-7. */
static inline float exp_approx(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float z = x * 1.44269504088896341f;
    float n = (float)(int32_t)(z + (z < 0.0f ? -0.5f : 0.5f)); /* round to nearest; floorf is a libm call */
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#if defined(__AVX512F__)
#include <immintrin.h>

/* exp_approx on 16 lanes: the same polynomial, 2^n by scalef */
static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}
#endif

static void layer_norm(const float *restrict x, const float *restrict w, const float *restrict b, int n,
                       float *restrict out) {
    float mean = 0.0f, var = 0.0f;
#pragma omp simd reduction(+ : mean)
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= (float)n;
#pragma omp simd reduction(+ : var)
    for (int i = 0; i < n; i++) {
        float d = x[i] - mean;
        var += d * d;
    }
    float inv = 1.0f / sqrtf(var / (float)n + LN_EPS);
#pragma omp simd
    for (int i = 0; i < n; i++) out[i] = (x[i] - mean) * inv * w[i] + b[i];
}

enum { POST_NONE, POST_GELU };

/* out[j] = init[j] + sum_i x[i] W[i][j] for columns j in [c0, c1) of a (in, out) row-major W;
 * init = bias (if given) + residual (if given); POST_GELU applies the tanh GELU. `acc` is scratch. */
static void matvec_cols(const float *restrict x, const float *restrict W, int in, int out, int c0, int c1,
                        const float *bias, const float *residual, int post, float *acc, float *y) {
    int w = c1 - c0;
    if (w <= 0) return;
    for (int j = 0; j < w; j++) acc[j] = (bias ? bias[c0 + j] : 0.0f) + (residual ? residual[c0 + j] : 0.0f);
    const float *base = W + c0;
    int i = 0;
    for (; i + 4 <= in; i += 4) {
        const float *restrict w0 = base + (size_t)i * out;
        const float *restrict w1 = w0 + out;
        const float *restrict w2 = w1 + out;
        const float *restrict w3 = w2 + out;
        float x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
        float *restrict a = acc;
#pragma omp simd
        for (int j = 0; j < w; j++) a[j] += x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j];
    }
    for (; i < in; i++) {
        const float *restrict w0 = base + (size_t)i * out;
        float x0 = x[i];
        float *restrict a = acc;
#pragma omp simd
        for (int j = 0; j < w; j++) a[j] += x0 * w0[j];
    }
    if (post == POST_GELU) {
        /* 0.5 u (1 + tanh(a)) = u * sigmoid(2a), a = sqrt(2/pi) (u + 0.044715 u^3) */
        float *restrict a = acc;
        int j = 0;
#if defined(__AVX512F__)
        for (; j + 16 <= w; j += 16) {
            __m512 u = _mm512_loadu_ps(a + j);
            __m512 t = _mm512_mul_ps(_mm512_set1_ps(-2.0f * 0.7978845608028654f),
                                     _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(0.044715f), u), _mm512_mul_ps(u, u), u));
            _mm512_storeu_ps(a + j, _mm512_div_ps(u, _mm512_add_ps(_mm512_set1_ps(1.0f), exp512(t))));
        }
#endif
        for (; j < w; j++) {
            float u = a[j];
            float t = 0.7978845608028654f * (u + 0.044715f * u * u * u);
            a[j] = u / (1.0f + exp_approx(-2.0f * t));
        }
    }
    memcpy(y + c0, acc, (size_t)w * sizeof(float));
}

/* ---- AVX-512 attention for head size 64 (the default model's): registers, not memory ---------- */
#if defined(__AVX512F__)
/* r[i] = sum of the lanes of v[i], i < 16: a transpose-and-add tree, 15 adds for 16 sums */
static inline __m512 sum16(const __m512 v[16]) {
    __m512 p[8], u[4], w[2];
    for (int i = 0; i < 8; i++) /* per 128-bit lane: [a b a b] */
        p[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 4; i++) /* per 128-bit lane: [a b c d] */
        u[i] = _mm512_add_ps(_mm512_shuffle_ps(p[2 * i], p[2 * i + 1], 0x44), _mm512_shuffle_ps(p[2 * i], p[2 * i + 1], 0xEE));
    for (int i = 0; i < 2; i++) /* lanes: halves of 4 vectors each */
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0x88), _mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], 0x88), _mm512_shuffle_f32x4(w[0], w[1], 0xDD));
}

/* scores for positions [a, a + 16k) of [a, b), every head; returns the first position not done */
static int scores_hs64(decoder_t *d, scratch_t *s, const float *kv, int start, int n, int a, int b) {
    const int R = 2 * d->kvs, W = d->W, g = d->group;
    const __m512 scale = _mm512_set1_ps(d->scale);
    int t0 = a;
    for (; t0 + 16 <= b; t0 += 16) {
        const float *rows = kv + (size_t)(start + t0) * R;
        if (t0 + 32 <= b) /* the keys of the block after next: the hardware prefetcher is slow to see a stride */
            for (int i = 0; i < 16; i++)
                for (int h = 0; h < d->nkv; h++)
                    for (int c = 0; c < 4; c++)
                        _mm_prefetch((const char *)(rows + (size_t)(32 + i) * R + h * 64 + c * 16), _MM_HINT_T0);
        for (int h = 0; h < d->nh; h++) {
            const float *qh = d->qkv + h * 64;
            const __m512 q0 = _mm512_loadu_ps(qh), q1 = _mm512_loadu_ps(qh + 16), q2 = _mm512_loadu_ps(qh + 32),
                         q3 = _mm512_loadu_ps(qh + 48);
            const float *kbase = rows + (h / g) * 64;
            __m512 acc[16];
            for (int i = 0; i < 16; i++) {
                const float *k = kbase + (size_t)i * R;
                __m512 x = _mm512_mul_ps(q0, _mm512_loadu_ps(k));
                x = _mm512_fmadd_ps(q1, _mm512_loadu_ps(k + 16), x);
                x = _mm512_fmadd_ps(q2, _mm512_loadu_ps(k + 32), x);
                acc[i] = _mm512_fmadd_ps(q3, _mm512_loadu_ps(k + 48), x);
            }
            __m512 r = _mm512_fmadd_ps(sum16(acc), scale, _mm512_loadu_ps(d->alibi + h * W + (W - n + t0)));
            _mm512_storeu_ps(s->scores + h * W + (t0 - a), r);
        }
    }
    return t0;
}

/* o[h] = sum_t p[h][t] v_t for up to 4 query heads of one kv head, accumulators in registers */
#define VALUES_HEADS 4
static void values_hs64(decoder_t *d, scratch_t *s, const float *kv, int start, int a, int b) {
    const int R = 2 * d->kvs, W = d->W, g = d->group;
    for (int h0 = 0; h0 < d->nh; h0 += VALUES_HEADS) {
        int cnt = d->nh - h0 < VALUES_HEADS ? d->nh - h0 : VALUES_HEADS;
        if (cnt > g - h0 % g) cnt = g - h0 % g; /* one kv head per pass */
        const float *vbase = kv + (size_t)start * R + d->kvs + (h0 / g) * 64;
        const float *p = s->scores + h0 * W - a;
        __m512 acc[VALUES_HEADS][4];
        for (int c = 0; c < VALUES_HEADS; c++)
            for (int e = 0; e < 4; e++) acc[c][e] = _mm512_setzero_ps();
        if (cnt == VALUES_HEADS) {
            for (int t = a; t < b; t++) {
                const float *v = vbase + (size_t)t * R;
                if (t + 16 < b)
                    for (int c = 0; c < 4; c++) _mm_prefetch((const char *)(v + (size_t)16 * R + c * 16), _MM_HINT_T0);
                const __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16), v2 = _mm512_loadu_ps(v + 32),
                             v3 = _mm512_loadu_ps(v + 48);
                for (int c = 0; c < VALUES_HEADS; c++) {
                    const __m512 pt = _mm512_set1_ps(p[c * W + t]);
                    acc[c][0] = _mm512_fmadd_ps(pt, v0, acc[c][0]);
                    acc[c][1] = _mm512_fmadd_ps(pt, v1, acc[c][1]);
                    acc[c][2] = _mm512_fmadd_ps(pt, v2, acc[c][2]);
                    acc[c][3] = _mm512_fmadd_ps(pt, v3, acc[c][3]);
                }
            }
        } else {
            for (int t = a; t < b; t++) {
                const float *v = vbase + (size_t)t * R;
                const __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16), v2 = _mm512_loadu_ps(v + 32),
                             v3 = _mm512_loadu_ps(v + 48);
                const __m512 pt = _mm512_set1_ps(p[t]);
                acc[0][0] = _mm512_fmadd_ps(pt, v0, acc[0][0]);
                acc[0][1] = _mm512_fmadd_ps(pt, v1, acc[0][1]);
                acc[0][2] = _mm512_fmadd_ps(pt, v2, acc[0][2]);
                acc[0][3] = _mm512_fmadd_ps(pt, v3, acc[0][3]);
            }
            cnt = 1;
        }
        for (int c = 0; c < cnt; c++)
            for (int e = 0; e < 4; e++) _mm512_storeu_ps(s->o + (h0 + c) * 64 + e * 16, acc[c][e]);
        if (cnt < VALUES_HEADS) h0 += cnt - VALUES_HEADS; /* the loop adds VALUES_HEADS: advance by cnt */
    }
}
#endif

/* ---- attention: this thread's positions of the window, then the merge ------------------------ */
static void attend_part(decoder_t *d, scratch_t *s, const float *kv, int start, int n, int a, int b) {
    const int nh = d->nh, hs = d->hs, g = d->group, W = d->W, R = 2 * d->kvs;
    const float *q = d->qkv;
    for (int h = 0; h < nh; h++) {
        s->m[h] = -INFINITY;
        s->l[h] = 0.0f;
    }
    memset(s->o, 0, (size_t)nh * hs * sizeof(float));
    if (a >= b) return;
    const int len = b - a;
    /* scores: every query head against the keys of its kv head */
    int done = a;
#if defined(__AVX512F__)
    if (hs == 64) done = scores_hs64(d, s, kv, start, n, a, b);
#endif
    for (int t = done; t < b; t++) {
        const float *row = kv + (size_t)(start + t) * R;
        for (int h = 0; h < nh; h++) {
            const float *restrict k = row + (h / g) * hs;
            const float *restrict qh = q + h * hs;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int e = 0; e < hs; e++) dot += qh[e] * k[e];
            s->scores[h * W + (t - a)] = dot * d->scale + d->alibi[h * W + (W - n + t)];
        }
    }
    for (int h = 0; h < nh; h++) {
        float *restrict p = s->scores + h * W;
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int t = 0; t < len; t++) mx = p[t] > mx ? p[t] : mx;
        float sum = 0.0f;
        int t0 = 0;
#if defined(__AVX512F__)
        __m512 vs = _mm512_setzero_ps();
        const __m512 vm = _mm512_set1_ps(mx);
        for (; t0 + 16 <= len; t0 += 16) {
            __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(p + t0), vm));
            _mm512_storeu_ps(p + t0, e);
            vs = _mm512_add_ps(vs, e);
        }
        sum = _mm512_reduce_add_ps(vs);
#endif
        for (int t = t0; t < len; t++) {
            p[t] = exp_approx(p[t] - mx);
            sum += p[t];
        }
        s->m[h] = mx;
        s->l[h] = sum;
    }
    /* weighted values: every query head's accumulator from each value row */
#if defined(__AVX512F__)
    if (hs == 64) {
        values_hs64(d, s, kv, start, a, b);
        return;
    }
#endif
    for (int t = a; t < b; t++) {
        const float *row = kv + (size_t)(start + t) * R + d->kvs;
        for (int h = 0; h < nh; h++) {
            const float *restrict v = row + (h / g) * hs;
            const float pt = s->scores[h * W + (t - a)];
            float *restrict o = s->o + h * hs;
#pragma omp simd
            for (int e = 0; e < hs; e++) o[e] += pt * v[e];
        }
    }
}

static void attend_merge(decoder_t *d, float *y, int T) {
    const int nh = d->nh, hs = d->hs;
    for (int h = 0; h < nh; h++) {
        float M = -INFINITY;
        for (int t = 0; t < T; t++) M = d->sc[t].m[h] > M ? d->sc[t].m[h] : M;
        float L = 0.0f;
        float *restrict out = y + h * hs;
        memset(out, 0, (size_t)hs * sizeof(float));
        for (int t = 0; t < T; t++) {
            if (d->sc[t].l[h] == 0.0f) continue; /* no positions in that thread's share */
            float c = expf(d->sc[t].m[h] - M);
            L += d->sc[t].l[h] * c;
            const float *restrict o = d->sc[t].o + h * hs;
#pragma omp simd
            for (int e = 0; e < hs; e++) out[e] += c * o[e];
        }
        float inv = 1.0f / L;
#pragma omp simd
        for (int e = 0; e < hs; e++) out[e] *= inv;
    }
}

/* ---- the step, run by every thread of the team ----------------------------------------------- */
static void run_step(decoder_t *d, int tid, int T) {
    const int C = d->C, S = d->S, kvs = d->kvs, QKV = d->C + 2 * d->kvs;
    scratch_t *s = &d->sc[tid];
    const int64_t pos = d->pos;
    int64_t seen = pos + 1 - d->origin;
    const int n = (int)(seen < d->W ? seen : d->W);
    const int start = (int)(((pos - n + 1) % S + S) % S);
    const int slot = (int)(pos % S);
    int a, b;

    /* d->x already holds the token's embedding: the caller wrote it before the team started */
    for (int li = 0; li < d->L; li++) {
        const layer_t *ly = &d->layers[li];
        layer_norm(d->x, ly->ln1_w, ly->ln1_b, C, s->h);
        share(QKV, tid, T, 16, &a, &b);
        matvec_cols(s->h, ly->attn_w, C, QKV, a, b, ly->attn_b, NULL, POST_NONE, s->acc, d->qkv);
        for (int j = (a > C ? a : C); j < b; j++) { /* this thread's k | v columns into both ring rows */
            ly->kv[(size_t)slot * 2 * kvs + (j - C)] = d->qkv[j];
            ly->kv[(size_t)(slot + S) * 2 * kvs + (j - C)] = d->qkv[j];
        }
        team_barrier(T);
        share(n, tid, T, 1, &a, &b);
        attend_part(d, s, ly->kv, start, n, a, b);
        team_barrier(T);
        attend_merge(d, s->y, T);
        share(C, tid, T, 16, &a, &b);
        /* x[a:b] += y @ proj_w[:, a:b]: each thread writes only its own columns of x, and reads only them */
        matvec_cols(s->y, ly->proj_w, C, C, a, b, NULL, d->x, POST_NONE, s->acc, d->x);
        team_barrier(T);
        layer_norm(d->x, ly->ln2_w, ly->ln2_b, C, s->h);
        share(d->F, tid, T, 16, &a, &b);
        matvec_cols(s->h, ly->fc_w, C, d->F, a, b, ly->fc_b, NULL, POST_GELU, s->acc, d->f);
        team_barrier(T);
        share(C, tid, T, 16, &a, &b);
        matvec_cols(d->f, ly->fc2_w, d->F, C, a, b, NULL, d->x, POST_NONE, s->acc, d->x);
        team_barrier(T);
    }
    /* the head, tied to the embedding: logits[v] = ln_f(x) . wte[v] */
    layer_norm(d->x, d->lnf_w, d->lnf_b, C, s->h);
    share(d->vocab, tid, T, 1, &a, &b);
    for (int v = a; v < b; v++) {
        const float *restrict e = d->wte + (size_t)v * C;
        const float *restrict h = s->h;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int i = 0; i < C; i++) dot += h[i] * e[i];
        d->logits[v] = dot;
    }
    /* no barrier: the parallel region ends with one */
}

/* the weight-streaming floor: y = x @ W over a (in, out) matrix, by the same team and routine as the step */
static void run_matvec(decoder_t *d, int tid, int T) {
    int a, b;
    share(d->mv_out, tid, T, 16, &a, &b);
    matvec_cols(d->mv_x, d->mv_w, d->mv_in, d->mv_out, a, b, NULL, NULL, POST_NONE, d->sc[tid].acc, d->mv_y);
}

enum { JOB_STEP, JOB_MATVEC };

static void run_job(decoder_t *d, int tid, int T) {
    if (d->job == JOB_MATVEC)
        run_matvec(d, tid, T);
    else
        run_step(d, tid, T);
}

/* the job on a team of up to d->T threads (fewer if OpenMP gives fewer: the shares follow the team) */
static void run_team(decoder_t *d) {
    if (d->T == 1) {
        run_job(d, 0, 1);
        return;
    }
#pragma omp parallel num_threads(d->T)
    run_job(d, omp_get_thread_num(), omp_get_num_threads());
}

/* ---- the C API (engine/native/kernel.py) ------------------------------------------------------- */
int sideman_abi_version(void) { return ABI_VERSION; }

void sideman_decoder_free(decoder_t *d);

/* cfg: CFG_N ints; returns NULL when the shapes are not supported or memory ran out */
decoder_t *sideman_decoder_new(const int64_t *cfg, int threads) {
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    decoder_t *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->vocab = (int)cfg[CFG_VOCAB];
    d->C = (int)cfg[CFG_D_MODEL];
    d->L = (int)cfg[CFG_LAYERS];
    d->nh = (int)cfg[CFG_HEADS];
    d->nkv = (int)cfg[CFG_KV_HEADS];
    d->F = (int)cfg[CFG_D_FF];
    d->W = (int)cfg[CFG_WINDOW];
    d->S = (int)cfg[CFG_SLOTS];
    if (d->nh < 1 || d->nkv < 1 || d->C % d->nh || d->nh % d->nkv || d->L < 1 || d->W < 1 || d->S < d->W) {
        free(d);
        return NULL;
    }
    d->hs = d->C / d->nh;
    d->group = d->nh / d->nkv;
    d->kvs = d->nkv * d->hs;
    d->scale = 1.0f / sqrtf((float)d->hs);
    d->T = threads;
    int width = d->C + 2 * d->kvs;
    if (d->F > width) width = d->F;
    d->width = width;
    d->layers = calloc((size_t)d->L, sizeof(layer_t));
    d->x = alloc_floats(d->C);
    d->qkv = alloc_floats(d->C + 2 * d->kvs);
    d->f = alloc_floats(d->F);
    int ok = d->layers && d->x && d->qkv && d->f;
    for (int t = 0; t < d->T && ok; t++) {
        scratch_t *s = &d->sc[t];
        s->h = alloc_floats(width);
        s->acc = alloc_floats(width);
        s->scores = alloc_floats((size_t)d->nh * d->W);
        s->m = alloc_floats(d->nh);
        s->l = alloc_floats(d->nh);
        s->o = alloc_floats((size_t)d->nh * d->hs);
        s->y = alloc_floats(d->C);
        ok = s->h && s->acc && s->scores && s->m && s->l && s->o && s->y;
    }
    if (!ok) {
        sideman_decoder_free(d);
        return NULL;
    }
    return d;
}

/* ptrs: G_N globals (G_COND may be NULL), then L_N per layer. Call again after the buffers move. */
void sideman_decoder_bind(decoder_t *d, void *const *ptrs) {
    d->wte = ptrs[G_WTE];
    d->lnf_w = ptrs[G_LNF_W];
    d->lnf_b = ptrs[G_LNF_B];
    d->alibi = ptrs[G_ALIBI];
    d->cond = ptrs[G_COND];
    for (int li = 0; li < d->L; li++) {
        void *const *p = ptrs + G_N + (size_t)li * L_N;
        layer_t *ly = &d->layers[li];
        ly->ln1_w = p[L_LN1_W];
        ly->ln1_b = p[L_LN1_B];
        ly->attn_w = p[L_ATTN_W];
        ly->attn_b = p[L_ATTN_B];
        ly->proj_w = p[L_PROJ_W];
        ly->ln2_w = p[L_LN2_W];
        ly->ln2_b = p[L_LN2_B];
        ly->fc_w = p[L_FC_W];
        ly->fc_b = p[L_FC_B];
        ly->fc2_w = p[L_FC2_W];
        ly->kv = p[L_KV];
    }
}

/* one token at absolute position pos (the window starts no earlier than origin) -> logits (vocab) */
void sideman_decoder_step(decoder_t *d, int token, int64_t pos, int64_t origin, float *logits) {
    d->token = token;
    d->pos = pos;
    d->origin = origin;
    d->logits = logits;
    d->job = JOB_STEP;
    const float *e = d->wte + (size_t)token * d->C;
    for (int i = 0; i < d->C; i++) d->x[i] = e[i] + (d->cond ? d->cond[i] : 0.0f);
    run_team(d);
}

/* y (out) = x (in) @ W (in, out), split by columns over the decoder's threads exactly as the step's
 * matrix-vector products are: the benchmark's floor. `out` at most the decoder's widest layer. */
int sideman_decoder_matvec(decoder_t *d, const float *W, int in, int out, const float *x, float *y) {
    if (((out + d->T - 1) / d->T + 15) / 16 * 16 > d->width) return -1; /* share()'s chunk must fit acc */
    d->mv_w = W;
    d->mv_x = x;
    d->mv_y = y;
    d->mv_in = in;
    d->mv_out = out;
    d->job = JOB_MATVEC;
    run_team(d);
    return 0;
}

void sideman_decoder_free(decoder_t *d) {
    if (!d) return;
    for (int t = 0; t < MAX_THREADS; t++) {
        scratch_t *s = &d->sc[t];
        free(s->h);
        free(s->acc);
        free(s->scores);
        free(s->m);
        free(s->l);
        free(s->o);
        free(s->y);
    }
    free(d->layers);
    free(d->x);
    free(d->qkv);
    free(d->f);
    free(d);
}
