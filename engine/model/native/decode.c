/* The fused CPU decode step of engine/train/model.py's TransformerLM: one token in, next-token logits out.
 *
 * It computes exactly what the TorchScript `decode(token, pos)` computes, over the same tensors (the
 * loaded module's weights and its KV ring buffers, bound by pointer: no copy), in one call instead of
 * ~150 interpreted ops. Float32, batch 1. Where it is faster than TorchScript on a small CPU:
 *   - no interpreter or op dispatch (that alone was ~0.1 ms of a 0.45 ms step);
 *   - attention as one pass over the window per sub-chunk, all query heads of a kv head per cache row
 *     read (multi-query attention reads the cache once, not once per head), split by position and
 *     merged flash-decoding style (max, sum, weighted values per sub-chunk);
 *   - exp and the tanh-GELU vectorised (a polynomial exp; libm's scalar expf/tanhf cost more than the
 *     matrix-vector products).
 *
 * Threads: a step that never waits for a descheduled thread. The step is a chain of phases (per layer:
 * q|k|v, attention, projection, fc, fc2; then the head), each split into SUBS sub-chunks per thread.
 * The calling thread and threads - 1 helper threads (started once, spinning between steps, asleep
 * after SPIN_NS idle) each work through their own sub-chunks, then steal the others' from the far end;
 * a sub-chunk that another thread started but has not published after PATIENCE_NS (it was preempted:
 * on a 2-vCPU VM every timer tick costs 20-100 us) is computed again. Every thread computes into its
 * own scratch and publishes only after winning the sub-chunk's claim (a compare-and-swap of the
 * step's epoch), so each output is written once per step, whoever computed it; a thread that wakes up
 * after its step has moved on loses every claim and writes nothing. With barriers (the OpenMP team
 * this replaced) one tick on either CPU stalled the whole step for its full length.
 *
 * Feeds: sideman_decoder_feed() runs a few tokens at once (a played chord, an answer's prefix) on the
 * calling thread alone, as matrix products: each weight is read from memory once and from cache once per
 * 4 tokens; what TorchScript's prefill computes, without ~1.5 ms of interpreter per call.
 *
 * Lifetimes: a late helper may still read the weights and cache of an earlier step, so bind() and
 * free() wait for the helpers to leave their step before the caller lets go of the old tensors; the
 * floor's matvec (the caller's operands) waits for them before it returns.
 *
 * Layouts (see the model): linear weights (in, out) row-major; each layer's KV ring `kv` is (2S, 2 kv hs):
 * row r = [k (kv hs) | v (kv hs)] of the token in slot r % S, every token written at slot and slot + S;
 * `alibi` is (n_heads, window) with alibi[h][window - 1 - d] = -slope_h * d.
 *
 * No Python, no torch headers, no OpenMP runtime (only `omp simd` hints): engine/model/native/kernel.py
 * loads it with ctypes.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ABI_VERSION 4
#define MAX_THREADS 16
#define SUBS 1                /* sub-chunks each thread owns in each phase */
#define PATIENCE_NS 4000      /* a started sub-chunk unpublished this long after ours (plus our own
                                 * time for one) is computed again */
#define SPIN_NS 200000        /* helpers spin this long for the next step, then sleep */
#define LN_EPS 1e-5f
#define ALIGN 64
#define FEED_MAX 32           /* tokens one feed() call takes */

enum { CFG_VOCAB, CFG_D_MODEL, CFG_LAYERS, CFG_HEADS, CFG_KV_HEADS, CFG_D_FF, CFG_WINDOW, CFG_SLOTS, CFG_N };
enum { L_LN1_W, L_LN1_B, L_ATTN_W, L_ATTN_B, L_PROJ_W, L_LN2_W, L_LN2_B, L_FC_W, L_FC_B, L_FC2_W, L_KV, L_N };
enum { G_WTE, G_LNF_W, G_LNF_B, G_ALIBI, G_COND, G_N }; /* then L_N pointers per layer */
/* the phases of a layer, then the head; the floor's mat-vec is a job of one phase */
enum { P_MATVEC = -1, P_QKV, P_ATTN, P_PROJ, P_FC, P_FC2, P_PER_LAYER, P_HEAD = P_PER_LAYER };
enum { JOB_STEP, JOB_MATVEC };

typedef struct {
    const float *ln1_w, *ln1_b, *attn_w, *attn_b, *proj_w, *ln2_w, *ln2_b, *fc_w, *fc_b, *fc2_w;
    float *kv;
} layer_t;

typedef struct {
    float *h;      /* (width): layer-norm output; each thread computes its own copy */
    float *acc;    /* (width): this thread's result for the sub-chunk in hand, published once claimed */
    float *scores; /* (n_heads, window): this thread's attention scores, then probabilities */
    float *m, *l;  /* (n_heads): this thread's running max and sum of exp */
    float *o;      /* (n_heads, hs): this thread's weighted sum of values */
    float *y;      /* (d_model): attention output, merged (each thread its own copy) */
} scratch_t;

/* one owner's sub-chunks of one phase: written by its owner, read by the others. Epochs are 64-bit:
 * they never wrap, so "claimed in an earlier job" is a plain comparison. */
typedef struct {
    _Atomic uint64_t claim[SUBS];   /* epoch of the job that published it (or is publishing it) */
    _Atomic uint64_t done[SUBS];    /* epoch of the job whose output is in place */
    _Atomic uint64_t started[SUBS]; /* epoch in which some thread started it (a hint: who takes what) */
} __attribute__((aligned(64))) flags_t;

/* what a job is: written by the caller before it publishes the job's sequence number */
typedef struct {
    uint64_t epoch;
    int job, n, start, slot;
    float *logits;
    const float *mv_w, *mv_x;
    float *mv_y;
    int mv_in, mv_out;
} job_t;

typedef struct decoder decoder_t;
typedef struct {
    decoder_t *d;
    int tid;
} helper_arg_t;

struct decoder {
    int vocab, C, L, nh, nkv, group, hs, kvs, F, W, S, T, NS, width, phases;
    float scale;
    const float *wte, *lnf_w, *lnf_b, *alibi, *cond;
    layer_t *layers;
    float *x, *qkv, *f;               /* shared: residual (C), fused q|k|v (C + 2 kvs), hidden (F) */
    float *part_m, *part_l, *part_o;  /* shared: attention partials of each sub-chunk */
    float *fx, *fh, *fqkv, *fy, *ff;  /* feed(): residuals (FEED_MAX, C), layer norms (.., C), q|k|v, attention
                                       * outputs (.., C), hidden (.., F); the caller's alone */
    flags_t *flags;                   /* (phases, T) */
    scratch_t sc[MAX_THREADS];
    job_t job;
    _Atomic uint32_t seq;             /* odd while the caller writes `job` (a seqlock) */
    _Atomic uint64_t epoch;           /* the newest job's number, from 1 */
    _Atomic uint32_t wake;            /* the futex word helpers sleep on: bumped with every job */
    _Atomic int sleepers, quit, paused;
    _Atomic int busy[MAX_THREADS];    /* helper t is inside a job */
    pthread_t helpers[MAX_THREADS];
    helper_arg_t args[MAX_THREADS];
    int started_helpers;
    /* tests: thread stall_tid sleeps stall_ns before claiming each of its sub-chunks of phase stall_phase */
    int stall_tid, stall_phase;
    long stall_ns;
};

/* ---- small helpers ------------------------------------------------------------------------------ */
static float *alloc_floats(size_t n) {
    size_t bytes = ((n * sizeof(float) + ALIGN - 1) / ALIGN) * ALIGN;
    float *p = aligned_alloc(ALIGN, bytes ? bytes : ALIGN);
    if (p) memset(p, 0, bytes ? bytes : ALIGN);
    return p;
}

/* sub-chunk `sub` [*a, *b) of n items split into `parts`, in chunks that are multiples of `align` */
static void share(int n, int sub, int parts, int align, int *a, int *b) {
    int chunk = (n + parts - 1) / parts;
    chunk = ((chunk + align - 1) / align) * align;
    int lo = sub * chunk;
    *a = lo < n ? lo : n;
    *b = lo + chunk < n ? lo + chunk : n;
}

static inline uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
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

/* a[j] = GELU(a[j]), the tanh form: 0.5 u (1 + tanh(t)) = u * sigmoid(2t), t = sqrt(2/pi) (u + 0.044715 u^3) */
static void gelu(float *restrict a, int w) {
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

/* acc[j - c0] = init[j] + sum_i x[i] W[i][j] for columns j in [c0, c1) of a (in, out) row-major W;
 * init = bias (if given) + residual (if given); POST_GELU applies the tanh GELU. acc is the calling
 * thread's own: the caller publishes it after claiming the columns. */
static void matvec_cols(const float *restrict x, const float *restrict W, int in, int out, int c0, int c1,
                        const float *bias, const float *residual, int post, float *acc) {
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
    if (post == POST_GELU) gelu(acc, w);
}


/* Y[t][j] = bias[j] + R[t][j] + sum_i X[t][i] W[i][j] for t < n and every column j of a (in, out)
 * row-major W (bias and R optional; R may be Y itself: the residual add in place); POST_GELU applies the
 * GELU. The feed's matrix products, on the calling thread: W is read from memory once, each of its
 * column blocks from cache once per 4 tokens. */
static void matmul_rows(const float *X, int ldx, const float *W, int in, int out, int n, const float *bias,
                        const float *R, int ldr, int post, float *Y, int ldy) {
    int n4 = 0; /* tokens done 4 at a time */
#if defined(__AVX512F__)
    if (out % 64 == 0) {
        n4 = n - n % 4;
        for (int c0 = 0; c0 < out; c0 += 64)         /* a column block (in x 64) is read from memory once, */
            for (int t0 = 0; t0 < n4; t0 += 4) {   /* then from L1/L2 for each 4 tokens */
                __m512 acc[4][4];
                for (int t = 0; t < 4; t++)
                    for (int e = 0; e < 4; e++) acc[t][e] = _mm512_setzero_ps();
                const float *x0 = X + (size_t)t0 * ldx;
                for (int i = 0; i < in; i++) {
                    const float *w = W + (size_t)i * out + c0;
                    if (t0 == 0 && i + 16 < in) /* the first pass over the block: rows 16 ahead (a stride the
                                                 * hardware prefetcher is slow to follow) */
                        for (int e = 0; e < 4; e++) _mm_prefetch((const char *)(w + (size_t)16 * out + e * 16), _MM_HINT_T0);
                    const __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + 16), w2 = _mm512_loadu_ps(w + 32),
                                 w3 = _mm512_loadu_ps(w + 48);
                    for (int t = 0; t < 4; t++) {
                        const __m512 xv = _mm512_set1_ps(x0[(size_t)t * ldx + i]);
                        acc[t][0] = _mm512_fmadd_ps(xv, w0, acc[t][0]);
                        acc[t][1] = _mm512_fmadd_ps(xv, w1, acc[t][1]);
                        acc[t][2] = _mm512_fmadd_ps(xv, w2, acc[t][2]);
                        acc[t][3] = _mm512_fmadd_ps(xv, w3, acc[t][3]);
                    }
                }
                for (int t = 0; t < 4; t++) {
                    float *y = Y + (size_t)(t0 + t) * ldy + c0;
                    const float *r = R ? R + (size_t)(t0 + t) * ldr + c0 : NULL;
                    for (int e = 0; e < 4; e++) {
                        __m512 v = acc[t][e];
                        if (bias) v = _mm512_add_ps(v, _mm512_loadu_ps(bias + c0 + e * 16));
                        if (r) v = _mm512_add_ps(v, _mm512_loadu_ps(r + e * 16));
                        _mm512_storeu_ps(y + e * 16, v);
                    }
                    if (post == POST_GELU) gelu(y, 64);
                }
            }
    }
#endif
    for (int t0 = n4; t0 < n; t0++) /* the rest: one token at a time (acc is Y's row, initialised before it is read) */
        matvec_cols(X + (size_t)t0 * ldx, W, in, out, 0, out, bias, R ? R + (size_t)t0 * ldr : NULL, post,
                    Y + (size_t)t0 * ldy);
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
static int scores_hs64(decoder_t *d, scratch_t *s, const float *q, const float *kv, int start, int n, int a, int b) {
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
            const float *qh = q + h * 64;
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
/* query q (n_heads, hs) against window positions [a, b) of the n in ring rows [start, start + n):
 * the thread's running max, sum of exp and weighted values per head (s->m, s->l, s->o) */
static void attend_part(decoder_t *d, scratch_t *s, const float *q, const float *kv, int start, int n, int a, int b) {
    const int nh = d->nh, hs = d->hs, g = d->group, W = d->W, R = 2 * d->kvs;
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
    if (hs == 64) done = scores_hs64(d, s, q, kv, start, n, a, b);
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

static void attend_merge(decoder_t *d, float *y) {
    const int nh = d->nh, hs = d->hs, NS = d->NS;
    for (int h = 0; h < nh; h++) {
        float M = -INFINITY;
        for (int p = 0; p < NS; p++) M = d->part_m[p * nh + h] > M ? d->part_m[p * nh + h] : M;
        float L = 0.0f;
        float *restrict out = y + h * hs;
        memset(out, 0, (size_t)hs * sizeof(float));
        for (int p = 0; p < NS; p++) {
            if (d->part_l[p * nh + h] == 0.0f) continue; /* no positions in that sub-chunk */
            float c = expf(d->part_m[p * nh + h] - M);
            L += d->part_l[p * nh + h] * c;
            const float *restrict o = d->part_o + ((size_t)p * nh + h) * hs;
#pragma omp simd
            for (int e = 0; e < hs; e++) out[e] += c * o[e];
        }
        float inv = 1.0f / L;
#pragma omp simd
        for (int e = 0; e < hs; e++) out[e] *= inv;
    }
}

/* the head, tied to the embedding: out[v - a] = h . wte[v] for tokens v in [a, b) (h: ln_f of the residual) */
static void head_logits(const decoder_t *d, const float *restrict h, int a, int b, float *restrict out) {
    const int C = d->C;
    for (int v = a; v < b; v++) {
        const float *restrict row = d->wte + (size_t)v * C;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int i = 0; i < C; i++) dot += h[i] * row[i];
        out[v - a] = dot;
    }
}

/* ---- the phases: each sub-chunk computed into the thread's scratch, published once claimed ----- */
static inline flags_t *flags_of(decoder_t *d, int k, int sub) { return &d->flags[(size_t)k * d->T + sub / SUBS]; }

/* what phase k of job j is (P_*), and its layer (NULL for the head and the mat-vec) */
static int phase_of(const decoder_t *d, const job_t *j, int k, const layer_t **ly) {
    *ly = j->job == JOB_STEP && k < d->L * P_PER_LAYER ? &d->layers[k / P_PER_LAYER] : NULL;
    return j->job == JOB_MATVEC ? P_MATVEC : *ly ? k % P_PER_LAYER : P_HEAD;
}

/* what every thread computes for itself before its first sub-chunk of phase k */
static void prologue(decoder_t *d, scratch_t *s, const job_t *j, int k) {
    const layer_t *ly;
    switch (phase_of(d, j, k, &ly)) {
    case P_QKV: layer_norm(d->x, ly->ln1_w, ly->ln1_b, d->C, s->h); break;
    case P_PROJ: attend_merge(d, s->y); break;
    case P_FC: layer_norm(d->x, ly->ln2_w, ly->ln2_b, d->C, s->h); break;
    case P_HEAD: layer_norm(d->x, d->lnf_w, d->lnf_b, d->C, s->h); break;
    default: break;
    }
}

/* sub-chunk `sub` of phase k: compute it, then publish it unless another thread already has */
static void run_sub(decoder_t *d, int tid, const job_t *j, uint64_t e, int k, int sub) {
    scratch_t *s = &d->sc[tid];
    const int C = d->C, QKV = d->C + 2 * d->kvs, NS = d->NS;
    const layer_t *ly;
    const int phase = phase_of(d, j, k, &ly);
    int a = 0, b = 0;
    switch (phase) {
    case P_MATVEC:
        share(j->mv_out, sub, NS, 16, &a, &b);
        matvec_cols(j->mv_x, j->mv_w, j->mv_in, j->mv_out, a, b, NULL, NULL, POST_NONE, s->acc);
        break;
    case P_QKV:
        share(QKV, sub, NS, 16, &a, &b);
        matvec_cols(s->h, ly->attn_w, C, QKV, a, b, ly->attn_b, NULL, POST_NONE, s->acc);
        break;
    case P_ATTN:
        share(j->n, sub, NS, 16, &a, &b);
        attend_part(d, s, d->qkv, ly->kv, j->start, j->n, a, b);
        break;
    case P_PROJ: /* x[a:b] + y @ proj_w[:, a:b]: this sub-chunk reads only the columns of x it replaces */
        share(C, sub, NS, 16, &a, &b);
        matvec_cols(s->y, ly->proj_w, C, C, a, b, NULL, d->x, POST_NONE, s->acc);
        break;
    case P_FC:
        share(d->F, sub, NS, 16, &a, &b);
        matvec_cols(s->h, ly->fc_w, C, d->F, a, b, ly->fc_b, NULL, POST_GELU, s->acc);
        break;
    case P_FC2:
        share(C, sub, NS, 16, &a, &b);
        matvec_cols(d->f, ly->fc2_w, d->F, C, a, b, NULL, d->x, POST_NONE, s->acc);
        break;
    case P_HEAD:
        share(d->vocab, sub, NS, 16, &a, &b);
        head_logits(d, s->h, a, b, s->acc);
        break;
    }
    if (tid == d->stall_tid && k == d->stall_phase && d->stall_ns > 0) {
        struct timespec ts = {d->stall_ns / 1000000000L, d->stall_ns % 1000000000L};
        nanosleep(&ts, NULL);
    }
    /* claim: acq_rel orders every input read above before it and every output write below after it; a
     * thread whose inputs were overwritten (its step is over, or the columns were published meanwhile)
     * always loses, because whatever overwrote them claimed first */
    flags_t *fl = flags_of(d, k, sub);
    const int i = sub % SUBS;
    uint64_t seen = atomic_load_explicit(&fl->claim[i], memory_order_relaxed);
    do {
        if (seen >= e) return;
    } while (!atomic_compare_exchange_weak_explicit(&fl->claim[i], &seen, e, memory_order_acq_rel,
                                                    memory_order_relaxed));
    const size_t cols = (size_t)(b > a ? b - a : 0) * sizeof(float);
    switch (phase) {
    case P_MATVEC: memcpy(j->mv_y + a, s->acc, cols); break;
    case P_QKV:
        memcpy(d->qkv + a, s->acc, cols);
        for (int c = (a > C ? a : C); c < b; c++) { /* the new token's k | v into both ring rows */
            ly->kv[(size_t)j->slot * 2 * d->kvs + (c - C)] = s->acc[c - a];
            ly->kv[(size_t)(j->slot + d->S) * 2 * d->kvs + (c - C)] = s->acc[c - a];
        }
        break;
    case P_ATTN:
        memcpy(d->part_m + (size_t)sub * d->nh, s->m, (size_t)d->nh * sizeof(float));
        memcpy(d->part_l + (size_t)sub * d->nh, s->l, (size_t)d->nh * sizeof(float));
        memcpy(d->part_o + (size_t)sub * d->nh * d->hs, s->o, (size_t)d->nh * d->hs * sizeof(float));
        break;
    case P_PROJ:
    case P_FC2: memcpy(d->x + a, s->acc, cols); break;
    case P_FC: memcpy(d->f + a, s->acc, cols); break;
    case P_HEAD: memcpy(j->logits + a, s->acc, cols); break;
    }
    atomic_store_explicit(&fl->done[i], e, memory_order_release);
}

/* thread tid's part of phase k of job e: its own sub-chunks, then anyone's, until all are published.
 * Returns 0 when the job is over without it (a helper that fell behind). */
static int run_phase(decoder_t *d, int tid, const job_t *j, uint64_t e, int k) {
    const int NS = d->NS;
    int ready = 0;          /* this thread's prologue for phase k is done */
    uint64_t patience = PATIENCE_NS; /* plus the time one of our own sub-chunks took: others take as long */
    for (int i = 0; i < SUBS; i++) {
        flags_t *fl = flags_of(d, k, tid * SUBS + i);
        if (atomic_load_explicit(&fl->started[i], memory_order_relaxed) == e) break; /* a stealer is here */
        atomic_store_explicit(&fl->started[i], e, memory_order_relaxed);
        if (!ready) prologue(d, &d->sc[tid], j, k), ready = 1;
        if (d->T == 1) { /* alone (the daemon): nobody to wait for, no clock to read */
            run_sub(d, tid, j, e, k, tid * SUBS + i);
            continue;
        }
        const uint64_t t0 = now_ns();
        run_sub(d, tid, j, e, k, tid * SUBS + i);
        patience = PATIENCE_NS + (now_ns() - t0);
    }
    int last_pending = -1;
    uint64_t since = 0;
    for (;;) {
        int pending = 0, free_sub = -1, late_sub = -1;
        for (int sub = NS - 1; sub >= 0; sub--) { /* from the far end: owners work from the near one */
            flags_t *fl = flags_of(d, k, sub);
            const int i = sub % SUBS;
            if (atomic_load_explicit(&fl->done[i], memory_order_acquire) == e) continue;
            pending++;
            if (late_sub < 0) late_sub = sub;
            if (free_sub < 0 && atomic_load_explicit(&fl->started[i], memory_order_relaxed) != e) free_sub = sub;
        }
        if (!pending) return 1;
        if (atomic_load_explicit(&d->epoch, memory_order_relaxed) != e) return 0;
        int sub = -1;
        if (free_sub >= 0) {
            sub = free_sub;
            atomic_store_explicit(&flags_of(d, k, sub)->started[sub % SUBS], e, memory_order_relaxed);
        } else {
            const uint64_t now = now_ns();
            if (pending != last_pending) {
                last_pending = pending;
                since = now;
            } else if (now - since > patience) { /* its thread is not running: compute it again */
                sub = late_sub;
                since = now;
            }
        }
        if (sub < 0) {
            cpu_relax();
            continue;
        }
        if (!ready) prologue(d, &d->sc[tid], j, k), ready = 1;
        run_sub(d, tid, j, e, k, sub);
    }
}

static void run_job(decoder_t *d, int tid, const job_t *j, uint64_t e) {
    if (j->job == JOB_MATVEC) {
        run_phase(d, tid, j, e, d->phases - 1);
        return;
    }
    for (int k = 0; k <= d->L * P_PER_LAYER; k++)
        if (!run_phase(d, tid, j, e, k)) return;
}

/* ---- helper threads ------------------------------------------------------------------------------ */
static long futex(_Atomic uint32_t *word, int op, uint32_t val) {
    return syscall(SYS_futex, (uint32_t *)word, op, val, NULL, NULL, 0);
}

/* the next job after `seen`: spin for SPIN_NS, then sleep until the caller wakes us */
static uint64_t wait_for_job(decoder_t *d, uint64_t seen) {
    uint64_t t0 = now_ns();
    for (;;) {
        const uint32_t w = atomic_load(&d->wake);
        const uint64_t e = atomic_load_explicit(&d->epoch, memory_order_acquire);
        if (e != seen || atomic_load(&d->quit)) return e;
        if (now_ns() - t0 < SPIN_NS) {
            for (int i = 0; i < 16; i++) cpu_relax();
            continue;
        }
        atomic_fetch_add(&d->sleepers, 1);
        if (atomic_load(&d->epoch) == seen && !atomic_load(&d->quit))
            futex(&d->wake, FUTEX_WAIT_PRIVATE, w); /* returns at once if a job came meanwhile */
        atomic_fetch_sub(&d->sleepers, 1);
        t0 = now_ns();
    }
}

/* a consistent copy of the job of epoch e (seqlock); 0 if a newer job has begun meanwhile */
static int read_job(decoder_t *d, uint64_t e, job_t *j) {
    uint32_t s1 = atomic_load_explicit(&d->seq, memory_order_acquire);
    if (s1 & 1u) return 0;
    *j = d->job;
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&d->seq, memory_order_relaxed) == s1 && j->epoch == e;
}

static void *helper_main(void *arg) {
    decoder_t *d = ((helper_arg_t *)arg)->d;
    const int tid = ((helper_arg_t *)arg)->tid;
    uint64_t seen = atomic_load(&d->epoch);
    for (;;) {
        const uint64_t e = wait_for_job(d, seen);
        if (atomic_load(&d->quit)) break;
        seen = e;
        atomic_store(&d->busy[tid], 1); /* seq_cst with `paused`: bind() sees us busy, or we see it paused */
        job_t j;
        if (!atomic_load(&d->paused) && read_job(d, e, &j)) run_job(d, tid, &j, e);
        atomic_store(&d->busy[tid], 0);
    }
    return NULL;
}

/* the caller's side of a job: publish it, wake sleeping helpers, do it */
static void run_caller(decoder_t *d, job_t *job) {
    const uint64_t e = atomic_load_explicit(&d->epoch, memory_order_relaxed) + 1;
    job->epoch = e;
    const uint32_t s = atomic_load_explicit(&d->seq, memory_order_relaxed);
    atomic_store_explicit(&d->seq, s + 1, memory_order_relaxed); /* odd: being written */
    atomic_thread_fence(memory_order_release);
    d->job = *job;
    atomic_store_explicit(&d->seq, s + 2, memory_order_release);
    atomic_store(&d->epoch, e);
    atomic_fetch_add(&d->wake, 1);
    if (atomic_load(&d->sleepers) > 0) futex(&d->wake, FUTEX_WAKE_PRIVATE, INT_MAX);
    run_job(d, 0, job, e);
}

/* wait until no helper is inside a job (they may still be reading an earlier step's tensors) */
static void wait_for_helpers(decoder_t *d) {
    for (int t = 1; t <= d->started_helpers; t++)
        while (atomic_load(&d->busy[t])) sched_yield();
}

/* ---- the C API (engine/model/native/kernel.py) ------------------------------------------------------- */
int sideman_abi_version(void) { return ABI_VERSION; }

void sideman_decoder_free(decoder_t *d);

/* cfg: CFG_N ints; returns NULL when the shapes are not supported, memory ran out or threads failed */
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
    if (d->nh < 1 || d->nkv < 1 || d->C % d->nh || d->nh % d->nkv || d->L < 1 || d->W < 1 || d->S < d->W ||
        d->vocab < 1) {
        free(d);
        return NULL;
    }
    d->hs = d->C / d->nh;
    d->group = d->nh / d->nkv;
    d->kvs = d->nkv * d->hs;
    d->scale = 1.0f / sqrtf((float)d->hs);
    d->T = threads;
    d->NS = threads * SUBS;
    d->phases = d->L * P_PER_LAYER + 2; /* the layers' phases, the head, the floor's mat-vec */
    d->stall_tid = -1;
    int width = d->C + 2 * d->kvs;
    if (d->F > width) width = d->F;
    if (d->vocab > width) width = d->vocab;
    d->width = width;
    d->layers = calloc((size_t)d->L, sizeof(layer_t));
    d->x = alloc_floats(d->C);
    d->qkv = alloc_floats(d->C + 2 * d->kvs);
    d->f = alloc_floats(d->F);
    d->part_m = alloc_floats((size_t)d->NS * d->nh);
    d->part_l = alloc_floats((size_t)d->NS * d->nh);
    d->part_o = alloc_floats((size_t)d->NS * d->nh * d->hs);
    d->flags = aligned_alloc(ALIGN, (size_t)d->phases * d->T * sizeof(flags_t));
    d->fx = alloc_floats((size_t)FEED_MAX * d->C);
    d->fh = alloc_floats((size_t)FEED_MAX * d->C);
    d->fqkv = alloc_floats((size_t)FEED_MAX * (d->C + 2 * d->kvs));
    d->fy = alloc_floats((size_t)FEED_MAX * d->C);
    d->ff = alloc_floats((size_t)FEED_MAX * d->F);
    int ok = d->layers && d->x && d->qkv && d->f && d->part_m && d->part_l && d->part_o && d->flags && d->fx &&
             d->fh && d->fqkv && d->fy && d->ff;
    if (d->flags) memset(d->flags, 0, (size_t)d->phases * d->T * sizeof(flags_t));
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
    for (int t = 1; t < d->T && ok; t++) {
        d->args[t] = (helper_arg_t){d, t};
        ok = pthread_create(&d->helpers[t], NULL, helper_main, &d->args[t]) == 0;
        if (ok) d->started_helpers = t;
    }
    if (!ok) {
        sideman_decoder_free(d);
        return NULL;
    }
    return d;
}

/* ptrs: G_N globals (G_COND may be NULL), then L_N per layer. Call again after the buffers move; on
 * return no helper reads the old ones any more. */
void sideman_decoder_bind(decoder_t *d, void *const *ptrs) {
    atomic_store(&d->paused, 1);
    wait_for_helpers(d);
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
    atomic_store(&d->paused, 0);
}

/* the window of the token at pos (starting no earlier than origin): its n positions, ring rows
 * [*start, *start + n) */
static int window_of(const decoder_t *d, int64_t pos, int64_t origin, int *start) {
    const int64_t seen = pos + 1 - origin;
    int n = (int)(seen < d->W ? seen : d->W);
    if (n < 1) n = 1;
    *start = (int)(((pos - n + 1) % d->S + d->S) % d->S);
    return n;
}

/* x = the token's embedding (+ the condition's) */
static void embed(const decoder_t *d, int64_t token, float *x) {
    const float *e = d->wte + (size_t)token * d->C;
    for (int i = 0; i < d->C; i++) x[i] = e[i] + (d->cond ? d->cond[i] : 0.0f);
}

/* one token at absolute position pos (the window starts no earlier than origin) -> logits (vocab) */
void sideman_decoder_step(decoder_t *d, int token, int64_t pos, int64_t origin, float *logits) {
    job_t j = {.job = JOB_STEP, .slot = (int)(pos % d->S), .logits = logits};
    j.n = window_of(d, pos, origin, &j.start);
    embed(d, token, d->x); /* before the job is published (a late helper reading x loses its claims anyway) */
    run_caller(d, &j);
}

/* tokens[0..n) at absolute positions pos .. pos + n - 1 (windows start no earlier than origin) ->
 * logits (vocab) after the last: what n steps compute, with every weight read once per 4 tokens instead
 * of once per token. The calling thread alone (no job: the helpers stay where they are; a late helper
 * still in the last step only loses its claims). Returns -1 when n is not 1 .. FEED_MAX, or more tokens
 * than the ring holds beside a window (slots - window = max_rollback, as prefill). */
int sideman_decoder_feed(decoder_t *d, const int64_t *tokens, int n, int64_t pos, int64_t origin, float *logits) {
    if (n < 1 || n > FEED_MAX || n > d->S - d->W) return -1; /* more could overwrite the first one's window */
    const int C = d->C, QKV = d->C + 2 * d->kvs, F = d->F, R = 2 * d->kvs, hs = d->hs;
    float *X = d->fx, *H = d->fh, *Q = d->fqkv, *Y = d->fy, *Fh = d->ff;
    scratch_t *s = &d->sc[0];
    for (int t = 0; t < n; t++) embed(d, tokens[t], X + (size_t)t * C);
    for (int li = 0; li < d->L; li++) {
        const layer_t *ly = &d->layers[li];
        for (int t = 0; t < n; t++) layer_norm(X + (size_t)t * C, ly->ln1_w, ly->ln1_b, C, H + (size_t)t * C);
        matmul_rows(H, C, ly->attn_w, C, QKV, n, ly->attn_b, NULL, 0, POST_NONE, Q, QKV);
        for (int t = 0; t < n; t++) { /* every token's k | v into both ring rows before anyone attends */
            const int64_t p = pos + t;
            const int slot = (int)(p % d->S);
            memcpy(ly->kv + (size_t)slot * R, Q + (size_t)t * QKV + C, (size_t)R * sizeof(float));
            memcpy(ly->kv + (size_t)(slot + d->S) * R, Q + (size_t)t * QKV + C, (size_t)R * sizeof(float));
        }
        for (int t = 0; t < n; t++) {
            int start;
            const int w = window_of(d, pos + t, origin, &start);
            attend_part(d, s, Q + (size_t)t * QKV, ly->kv, start, w, 0, w);
            for (int h = 0; h < d->nh; h++) {
                const float inv = 1.0f / s->l[h];
                for (int e = 0; e < hs; e++) Y[(size_t)t * C + h * hs + e] = s->o[h * hs + e] * inv;
            }
        }
        matmul_rows(Y, C, ly->proj_w, C, C, n, NULL, X, C, POST_NONE, X, C);
        for (int t = 0; t < n; t++) layer_norm(X + (size_t)t * C, ly->ln2_w, ly->ln2_b, C, H + (size_t)t * C);
        matmul_rows(H, C, ly->fc_w, C, F, n, ly->fc_b, NULL, 0, POST_GELU, Fh, F);
        matmul_rows(Fh, F, ly->fc2_w, F, C, n, NULL, X, C, POST_NONE, X, C);
    }
    layer_norm(X + (size_t)(n - 1) * C, d->lnf_w, d->lnf_b, C, s->h);
    head_logits(d, s->h, 0, d->vocab, logits);
    return 0;
}

int sideman_decoder_feed_max(void) { return FEED_MAX; }

/* y (out) = x (in) @ W (in, out), split by columns into the same sub-chunks, over the same threads and
 * routine as the step's matrix-vector products: the benchmark's floor. A plain fork-join: the operands
 * are the caller's, so it returns when no helper is still inside it. `out` at most the decoder's
 * widest layer / threads. */
int sideman_decoder_matvec(decoder_t *d, const float *W, int in, int out, const float *x, float *y) {
    if (((out + d->NS - 1) / d->NS + 15) / 16 * 16 > d->width) return -1; /* a sub-chunk must fit acc */
    job_t j = {.job = JOB_MATVEC, .mv_w = W, .mv_x = x, .mv_y = y, .mv_in = in, .mv_out = out};
    run_caller(d, &j);
    wait_for_helpers(d);
    return 0;
}

/* tests: from now on thread `tid` (0 = the caller) sleeps `ns` before claiming its sub-chunks of phase
 * `phase` (0 .. layers * 5: the layers' phases, then the head); ns = 0 stops it */
void sideman_decoder_debug_stall(decoder_t *d, int tid, int phase, long ns) {
    d->stall_ns = 0;
    d->stall_tid = tid;
    d->stall_phase = phase;
    d->stall_ns = ns;
}

void sideman_decoder_free(decoder_t *d) {
    if (!d) return;
    atomic_store(&d->quit, 1);
    atomic_fetch_add(&d->wake, 1);
    futex(&d->wake, FUTEX_WAKE_PRIVATE, INT_MAX);
    for (int t = 1; t <= d->started_helpers; t++) pthread_join(d->helpers[t], NULL);
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
    free(d->part_m);
    free(d->part_l);
    free(d->part_o);
    free(d->flags);
    free(d->fx);
    free(d->fh);
    free(d->fqkv);
    free(d->fy);
    free(d->ff);
    free(d);
}
