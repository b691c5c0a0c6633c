/* One precision of the fused HSIC pass: included twice by hsic_pass.c, with
 * REAL = float, SFX(x) = x##_f32 and REAL = double, SFX(x) = x##_f64.
 *
 * Notation (hsens_jax.sensitivity.hsic._single_pass_v): g input kernels
 * K_ij = exp(-(x_i - x_j)^2 / 2) over n rows (the first n of N), or [x_i == x_j] for a
 * categorical input; one output kernel L (Gaussian in the k output
 * columns, or linear z_i . z_j); rk_i approximate row means of K (a strided
 * subsample of CENTRE_SAMPLE rows), Kt = K - rk_i - rk_j + mean(rk); rl = L 1 / n
 * exact, Lc = L - rl_i - rl_j + mean(rl) (exactly centred); Q = Lc o Lc.
 *
 * Phases, the rows shared among the threads, each kernel entry computed in
 * registers and never stored:
 *   0. rk (g, n) and rl (n);
 *   1. sum Kt^2, sum Kt Lc, sum (Kt Lc)^2, sum Lc^2 (per kernel), a = Kt 1,
 *      kq = (Kt o Q) 1, q = Q 1;
 *   2. (Gamma) uQu with u = a / n - 1'a / (2 n^2).
 * Sums run over the upper triangle (weight 2 off the diagonal); row sums of the
 * triangle go straight to the row, column sums to a per-thread accumulator in
 * REAL, added to a double one every FLUSH_ROWS rows. */

static inline REAL SFX(expneg)(REAL x) {
  /* exp(x) for x <= 0: x = m ln2 + r, |r| <= ln2 / 2, 2^m from the exponent bits,
   * exp(r) by its Taylor polynomial (degree 7 in float: error < 2e-8 relative;
   * degree 13 in double: < 5e-17), 0 below the smallest normal number. */
  const REAL log2e = (REAL)1.4426950408889634;
  const REAL ln2hi = (REAL)0.693145751953125, ln2lo = (REAL)1.4286068203094172e-06;
#if SFX_IS_DOUBLE
  const REAL shifter = 6755399441055744.0; /* 1.5 * 2^52: adding it rounds to an integer */
  const REAL lo = -708.0;
#define EXP_DEGREE 13
#else
  const REAL shifter = 12582912.0f; /* 1.5 * 2^23 */
  const REAL lo = -87.0f;
#define EXP_DEGREE 7
#endif
  REAL xc = x < lo ? lo : x;
  REAL m = (xc * log2e + shifter) - shifter;
  REAL r = (xc - m * ln2hi) - m * ln2lo;
  REAL p = (REAL)INV_FACTORIAL[EXP_DEGREE];
#pragma GCC unroll 16
  for (int k = EXP_DEGREE - 1; k >= 0; k--) p = p * r + (REAL)INV_FACTORIAL[k];
#if SFX_IS_DOUBLE
  int64_t bits = ((int64_t)m + 1023) << 52;
#else
  int32_t bits = ((int32_t)m + 127) << 23;
#endif
  REAL scale;
  memcpy(&scale, &bits, sizeof scale);
  return x < lo ? (REAL)0 : p * scale;
#undef EXP_DEGREE
}

typedef struct {
  /* inputs */
  const REAL *X;        /* (g, N) inputs divided by their bandwidths */
  const uint8_t *cat;   /* (g,) 1: categorical input */
  const REAL *Z;        /* (N, k) outputs (divided by their bandwidths if Gaussian) */
  int64_t g, N, k, n;
  int out_linear, want_gamma, nthreads;
  /* results */
  REAL *sums;  /* (5, g): sum Kt^2, sum Kt Lc, sum (Kt Lc)^2, uQu, mean(rk) */
  REAL *scal;  /* (2,): sum Lc^2, mean(rl) */
  REAL *gvec;  /* (3, g, N): a, kq, rk */
  REAL *nvec;  /* (2, N): q, rl */
  /* work */
  double *rk, *rl, *rkbar, rlbar;           /* (g, N), (N), (g) */
  REAL *rkf, *rlf, *uf;                     /* REAL copies: rk, rl, u (g, N), (N), (g, N) */
  REAL *xsub;                               /* (g, m): the strided subsample of the rows */
  Barrier barrier;
  double *a_row, *kq_row, *q_row;           /* (g, N), (g, N), (N): row sums, by row owner */
  double *t_acc;                            /* (T, 4 g + 2): per-thread sums */
  double *t_col;                            /* (T, (2 g + 1) N): per-thread column sums */
  REAL *t_fcol;                             /* (T, (2 g + 1) N): their REAL accumulators */
  REAL *t_lc;                               /* (T, N): one row of Lc */
  int64_t next_row;                         /* shared row counter (atomic) */
} SFX(Pass);

static inline REAL SFX(out_kernel)(const SFX(Pass) *P, int64_t i, int64_t j) {
  const REAL *zi = P->Z + i * P->k, *zj = P->Z + j * P->k;
  REAL s = 0;
  if (P->out_linear) {
    for (int64_t c = 0; c < P->k; c++) s += zi[c] * zj[c];
    return s;
  }
  for (int64_t c = 0; c < P->k; c++) {
    REAL d = zi[c] - zj[c];
    s += d * d;
  }
  return SFX(expneg)((REAL)-0.5 * s);
}

/* Lc_ij for j in [j0, n) into lc[j] (row i), the output kernel in the common k = 1
 * case vectorised. */
static void SFX(lc_row)(const SFX(Pass) *P, int64_t i, int64_t j0, REAL *lc) {
  const int64_t n = P->n;
  const REAL ri = (REAL)(P->rl[i] - P->rlbar);
  const REAL *rl = P->rlf;
  if (P->k == 1) {
    const REAL zi = P->Z[i];
    const REAL *z = P->Z;
    if (P->out_linear) {
#pragma omp simd
      for (int64_t j = j0; j < n; j++) lc[j] = zi * z[j] - ri - rl[j];
    } else {
#pragma omp simd
      for (int64_t j = j0; j < n; j++) {
        REAL d = zi - z[j];
        lc[j] = SFX(expneg)((REAL)-0.5 * d * d) - ri - rl[j];
      }
    }
    return;
  }
  for (int64_t j = j0; j < n; j++) lc[j] = SFX(out_kernel)(P, i, j) - ri - rl[j];
}

static int64_t SFX(take_rows)(SFX(Pass) *P, int64_t count) {
  return __atomic_fetch_add(&P->next_row, count, __ATOMIC_RELAXED);
}

#define ROW_CHUNK 4
#define FLUSH_ROWS 256
#define CENTRE_SAMPLE 128
/* per-thread sums 64-byte lines apart: no false sharing */
#define ACC_STRIDE(g) ((((4 * (g) + 2) + 7) / 8) * 8 + 8)

static void *SFX(worker)(void *arg) {
  SFX(Pass) *P = ((void **)arg)[0];
  const int t = (int)(intptr_t)((void **)arg)[1];
  gate_wait(&P->barrier);
  const int64_t g = P->g, N = P->N, n = P->n;
  const REAL *X = P->X;
  const int64_t m = N < CENTRE_SAMPLE ? N : CENTRE_SAMPLE;
  /* ---- phase 0: shifts rk (rows of the strided subsample), exact rl */
  for (int64_t i0 = SFX(take_rows)(P, ROW_CHUNK); i0 < n; i0 = SFX(take_rows)(P, ROW_CHUNK)) {
    int64_t i1 = i0 + ROW_CHUNK < n ? i0 + ROW_CHUNK : n;
    for (int64_t i = i0; i < i1; i++) {
      for (int64_t p = 0; p < g; p++) {
        const REAL xi = X[p * N + i];
        const int cat = P->cat[p];
        const REAL *xs = P->xsub + p * m;
        REAL s = 0;
        if (cat) {
#pragma omp simd reduction(+ : s)
          for (int64_t s_ = 0; s_ < m; s_++) s += xs[s_] == xi ? (REAL)1 : (REAL)0;
        } else {
#pragma omp simd reduction(+ : s)
          for (int64_t s_ = 0; s_ < m; s_++) {
            REAL d = xi - xs[s_];
            s += SFX(expneg)((REAL)-0.5 * d * d);
          }
        }
        P->rk[p * N + i] = (double)s / (double)m;
      }
      double s = 0;
      if (P->k == 1 && !P->out_linear) {
        const REAL *z = P->Z;
        const REAL zi = z[i];
        REAL acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < n; j++) {
          REAL d = zi - z[j];
          acc += SFX(expneg)((REAL)-0.5 * d * d);
        }
        s = acc;
      } else {
        for (int64_t j = 0; j < n; j++) s += SFX(out_kernel)(P, i, j);
      }
      P->rl[i] = s / (double)n;
    }
  }
  barrier_wait(&P->barrier);
  if (t == 0) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += P->rl[i];
    P->rlbar = s / (double)n;
    for (int64_t p = 0; p < g; p++) {
      double s2 = 0;
      for (int64_t i = 0; i < n; i++) s2 += P->rk[p * N + i];
      P->rkbar[p] = s2 / (double)n;
      for (int64_t i = 0; i < n; i++) P->rkf[p * N + i] = (REAL)P->rk[p * N + i];
    }
    for (int64_t i = 0; i < n; i++) P->rlf[i] = (REAL)P->rl[i];
    P->next_row = 0;
  }
  barrier_wait(&P->barrier);
  /* ---- phase 1: the main pass */
  const int64_t ncol = (2 * g + 1) * N;
  double *col = P->t_col + (int64_t)t * ncol;
  REAL *fcol = P->t_fcol + (int64_t)t * ncol;
  REAL *lc = P->t_lc + (int64_t)t * N;
  double *acc = P->t_acc + (int64_t)t * ACC_STRIDE(g);
  int64_t since_flush = 0, lo_flush = N;
  for (int64_t i0 = SFX(take_rows)(P, ROW_CHUNK); i0 < n; i0 = SFX(take_rows)(P, ROW_CHUNK)) {
    int64_t i1 = i0 + ROW_CHUNK < n ? i0 + ROW_CHUNK : n;
    if (i0 < lo_flush) lo_flush = i0;
    for (int64_t i = i0; i < i1; i++) {
      SFX(lc_row)(P, i, i, lc);
      REAL *fq = fcol + 2 * g * N;
      {
        REAL syy = 0, qr = 0;
#pragma omp simd reduction(+ : syy, qr)
        for (int64_t j = i + 1; j < n; j++) {
          REAL q = lc[j] * lc[j];
          syy += q;
          qr += q;
          fq[j] += q;
        }
        REAL qd = lc[i] * lc[i];
        acc[4 * g] += 2.0 * (double)syy + (double)qd;
        P->q_row[i] = (double)qr + (double)qd;
      }
      for (int64_t p = 0; p < g; p++) {
        const REAL *x = X + p * N;
        const REAL xi = x[i];
        const int cat = P->cat[p];
        const REAL ri = (REAL)(P->rk[p * N + i] - P->rkbar[p]);
        REAL *fa = fcol + p * N, *fk = fcol + (g + p) * N;
        const REAL *rkp = P->rkf + p * N;
        REAL sa = 0, sxx = 0, sxy = 0, s1 = 0, skq = 0;
        if (cat) {
#pragma omp simd reduction(+ : sa, sxx, sxy, s1, skq)
          for (int64_t j = i + 1; j < n; j++) {
            REAL kt = (x[j] == xi ? (REAL)1 : (REAL)0) - ri - rkp[j];
            REAL mm = kt * lc[j], kq = mm * lc[j];
            sa += kt; sxx += kt * kt; sxy += mm; s1 += mm * mm; skq += kq;
            fa[j] += kt; fk[j] += kq;
          }
        } else {
#pragma omp simd reduction(+ : sa, sxx, sxy, s1, skq)
          for (int64_t j = i + 1; j < n; j++) {
            REAL d = xi - x[j];
            REAL kt = SFX(expneg)((REAL)-0.5 * d * d) - ri - rkp[j];
            REAL mm = kt * lc[j], kq = mm * lc[j];
            sa += kt; sxx += kt * kt; sxy += mm; s1 += mm * mm; skq += kq;
            fa[j] += kt; fk[j] += kq;
          }
        }
        /* the diagonal entry, K_ii = 1 */
        const REAL ktd = (REAL)1 - ri - rkp[i];
        const REAL md = ktd * lc[i];
        acc[p] += 2.0 * (double)sxx + (double)(ktd * ktd);
        acc[g + p] += 2.0 * (double)sxy + (double)md;
        acc[2 * g + p] += 2.0 * (double)s1 + (double)(md * md);
        P->a_row[p * N + i] = (double)sa + (double)ktd;
        P->kq_row[p * N + i] = (double)skq + (double)(md * lc[i]);
      }
    }
    since_flush += i1 - i0;
    if (since_flush >= FLUSH_ROWS) {
      for (int64_t r = 0; r < 2 * g + 1; r++)
        for (int64_t j = lo_flush; j < n; j++) {
          col[r * N + j] += (double)fcol[r * N + j];
          fcol[r * N + j] = 0;
        }
      since_flush = 0;
      lo_flush = N;
    }
  }
  for (int64_t r = 0; r < 2 * g + 1; r++)
    for (int64_t j = 0; j < n; j++) {
      col[r * N + j] += (double)fcol[r * N + j];
      fcol[r * N + j] = 0;
    }
  barrier_wait(&P->barrier);
  /* ---- reduce the column sums (each thread a slice of the columns) */
  {
    int64_t total = ncol, per = (total + P->nthreads - 1) / P->nthreads;
    int64_t lo = per * t, hi = lo + per < total ? lo + per : total;
    for (int64_t e = lo; e < hi; e++) {
      double s = 0;
      for (int u = 0; u < P->nthreads; u++) s += P->t_col[(int64_t)u * ncol + e];
      int64_t r = e / N, j = e % N;
      if (j >= n) continue;
      if (r < g) P->a_row[r * N + j] += s;
      else if (r < 2 * g) P->kq_row[(r - g) * N + j] += s;
      else P->q_row[j] += s;
    }
  }
  if (t == 0) P->next_row = 0;
  barrier_wait(&P->barrier);
  if (!P->want_gamma) return NULL;
  /* ---- phase 2: uQu, u = a / n - 1'a / (2 n^2) */
  if (t == 0) {
    for (int64_t p = 0; p < g; p++) {
      double sa = 0;
      for (int64_t i = 0; i < n; i++) sa += P->a_row[p * N + i];
      for (int64_t i = 0; i < n; i++)
        P->uf[p * N + i] = (REAL)(P->a_row[p * N + i] / (double)n - sa / (2.0 * (double)n * (double)n));
    }
  }
  barrier_wait(&P->barrier);
  const REAL *uf = P->uf;
  for (int64_t i0 = SFX(take_rows)(P, ROW_CHUNK); i0 < n; i0 = SFX(take_rows)(P, ROW_CHUNK)) {
    int64_t i1 = i0 + ROW_CHUNK < n ? i0 + ROW_CHUNK : n;
    for (int64_t i = i0; i < i1; i++) {
      SFX(lc_row)(P, i, i, lc);
      for (int64_t j = i; j < n; j++) lc[j] *= lc[j];
      for (int64_t p = 0; p < g; p++) {
        const REAL *up = uf + p * N;
        REAL s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t j = i + 1; j < n; j++) s += lc[j] * up[j];
        acc[3 * g + p] += (double)up[i] * (2.0 * (double)s + (double)(lc[i] * up[i]));
      }
    }
  }
  return NULL;
}

/* Runs the pass; returns 0, or an errno-like code when memory or threads fail. */
static int SFX(hsic_pass)(const REAL *X, const uint8_t *cat, int64_t g, int64_t N,
                          const REAL *Z, int64_t k, int out_linear, int64_t n, int want_gamma,
                          int nthreads, REAL *sums, REAL *scal, REAL *gvec, REAL *nvec) {
  SFX(Pass) P;
  memset(&P, 0, sizeof P);
  P.X = X; P.cat = cat; P.Z = Z;
  P.g = g; P.N = N; P.k = k; P.n = n;
  P.out_linear = out_linear; P.want_gamma = want_gamma;
  if (nthreads < 1) nthreads = 1;
  if (nthreads > n / ROW_CHUNK + 1) nthreads = (int)(n / ROW_CHUNK + 1);
  P.nthreads = nthreads;
  const int64_t ncol = (2 * g + 1) * N;
  P.rk = calloc((size_t)(g * N), sizeof(double));
  P.rl = calloc((size_t)N, sizeof(double));
  P.rkbar = calloc((size_t)g, sizeof(double));
  P.rkf = calloc((size_t)(g * N), sizeof(REAL));
  P.rlf = calloc((size_t)N, sizeof(REAL));
  P.uf = calloc((size_t)(g * N), sizeof(REAL));
  const int64_t m = N < CENTRE_SAMPLE ? N : CENTRE_SAMPLE;
  P.xsub = calloc((size_t)(g * m), sizeof(REAL));
  if (P.xsub)
    for (int64_t p = 0; p < g; p++)
      for (int64_t s_ = 0; s_ < m; s_++)
        P.xsub[p * m + s_] = X[p * N + (int64_t)floor(((double)s_ + 0.5) * ((double)n / (double)m))];
  P.a_row = calloc((size_t)(g * N), sizeof(double));
  P.kq_row = calloc((size_t)(g * N), sizeof(double));
  P.q_row = calloc((size_t)N, sizeof(double));
  P.t_acc = calloc((size_t)(nthreads * ACC_STRIDE(g)), sizeof(double));
  P.t_col = calloc((size_t)(nthreads * ncol), sizeof(double));
  P.t_fcol = calloc((size_t)(nthreads * ncol), sizeof(REAL));
  P.t_lc = calloc((size_t)(nthreads * N), sizeof(REAL));
  int err = 0;
  if (!P.xsub || !P.rk || !P.rl || !P.rkbar || !P.rkf || !P.rlf || !P.uf || !P.a_row || !P.kq_row || !P.q_row || !P.t_acc || !P.t_col ||
      !P.t_fcol || !P.t_lc)
    err = 12; /* ENOMEM */
  pthread_t *th = NULL;
  void **args = NULL;
  if (!err) {
    th = calloc((size_t)nthreads, sizeof(pthread_t));
    args = calloc((size_t)(2 * nthreads), sizeof(void *));
    if (!th || !args) err = 12;
  }
  if (!err) {
    for (int t = 0; t < nthreads; t++) {
      args[2 * t] = &P;
      args[2 * t + 1] = (void *)(intptr_t)t;
    }
    /* threads that fail to start are left out: the pass runs on those that did */
    barrier_init(&P.barrier);
    int started = 1;
    barrier_hold(&P.barrier);
    for (int t = 1; t < nthreads; t++) {
      if (pthread_create(&th[t], NULL, SFX(worker), &args[2 * t]) != 0) break;
      started++;
    }
    P.nthreads = started;
    barrier_release(&P.barrier, started);
    SFX(worker)(&args[0]);
    for (int t = 1; t < started; t++) pthread_join(th[t], NULL);
    barrier_destroy(&P.barrier);
    nthreads = started;
  }
  if (!err) {
    for (int64_t r = 0; r < 4 * g + 2; r++) {
      double s = 0;
      for (int t = 0; t < nthreads; t++) s += P.t_acc[(int64_t)t * ACC_STRIDE(g) + r];
      if (r < 4 * g) sums[r] = (REAL)s;
      else if (r == 4 * g) scal[0] = (REAL)s;
    }
    scal[1] = (REAL)P.rlbar;
    for (int64_t p = 0; p < g; p++) sums[4 * g + p] = (REAL)P.rkbar[p];
    for (int64_t e = 0; e < g * N; e++) {
      int64_t j = e % N;
      int ok = j < n;
      gvec[e] = ok ? (REAL)P.a_row[e] : 0;
      gvec[g * N + e] = ok ? (REAL)P.kq_row[e] : 0;
      gvec[2 * g * N + e] = ok ? (REAL)P.rk[e] : 0;
    }
    for (int64_t j = 0; j < N; j++) {
      nvec[j] = j < n ? (REAL)P.q_row[j] : 0;
      nvec[N + j] = j < n ? (REAL)P.rl[j] : 0;
    }
  }
  free(P.rk); free(P.rl); free(P.rkbar); free(P.rkf); free(P.rlf); free(P.uf); free(P.xsub); free(P.a_row); free(P.kq_row); free(P.q_row);
  free(P.t_acc); free(P.t_col); free(P.t_fcol); free(P.t_lc); free(th); free(args);
  return err;
}
