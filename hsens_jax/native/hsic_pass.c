/* hsens_jax's fused HSIC pass for CPUs: the V-statistic, R2 ingredients and Gamma
 * moments of hsens_jax.sensitivity.hsic._single_pass_v in one sweep of the kernel
 * entries, each computed in registers (XLA:CPU materialises every kernel block and
 * reduces it once per sum).  Compiled on the user's machine by hsens_jax.native
 * (cc -O2 -march=native), called from jitted code as an XLA FFI custom call
 * (plain C against xla/ffi/api/c_api.h, from jaxlib's include directory). */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xla/ffi/api/c_api.h"

/* 1 / k!, k = 0..13: the Taylor coefficients of exp */
static const double INV_FACTORIAL[14] = {
    1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
    1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800.0};

/* ---- a barrier that also holds the workers until their number is known (pthread
 * barriers are missing on macOS, and a thread may fail to start) */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int count, waiting, generation, open;
} Barrier;

static void barrier_init(Barrier *b) {
  pthread_mutex_init(&b->mu, NULL);
  pthread_cond_init(&b->cv, NULL);
  b->count = b->waiting = b->generation = b->open = 0;
}
static void barrier_hold(Barrier *b) { b->open = 0; }
static void barrier_release(Barrier *b, int count) {
  pthread_mutex_lock(&b->mu);
  b->count = count;
  b->open = 1;
  pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
}
static void gate_wait(Barrier *b) {
  pthread_mutex_lock(&b->mu);
  while (!b->open) pthread_cond_wait(&b->cv, &b->mu);
  pthread_mutex_unlock(&b->mu);
}
static void barrier_wait(Barrier *b) {
  pthread_mutex_lock(&b->mu);
  int gen = b->generation;
  if (++b->waiting == b->count) {
    b->waiting = 0;
    b->generation++;
    pthread_cond_broadcast(&b->cv);
  } else {
    while (gen == b->generation) pthread_cond_wait(&b->cv, &b->mu);
  }
  pthread_mutex_unlock(&b->mu);
}
static void barrier_destroy(Barrier *b) {
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->cv);
}

#define REAL float
#define SFX(x) x##_f32
#define SFX_IS_DOUBLE 0
#include "hsic_pass_body.h"
#undef REAL
#undef SFX
#undef SFX_IS_DOUBLE
#define REAL double
#define SFX(x) x##_f64
#define SFX_IS_DOUBLE 1
#include "hsic_pass_body.h"
#undef REAL
#undef SFX
#undef SFX_IS_DOUBLE

/* ---- the XLA FFI handler (API version 1, C API) */
static XLA_FFI_Error *ffi_error(const XLA_FFI_Api *api, const char *msg) {
  XLA_FFI_Error_Create_Args a;
  memset(&a, 0, sizeof a);
  a.struct_size = XLA_FFI_Error_Create_Args_STRUCT_SIZE;
  a.message = msg;
  a.errc = XLA_FFI_Error_Code_INVALID_ARGUMENT;
  return api->XLA_FFI_Error_Create(&a);
}

static int attr_int(const XLA_FFI_CallFrame *cf, const char *name, int64_t *out) {
  for (int64_t i = 0; i < cf->attrs.size; i++) {
    const XLA_FFI_ByteSpan *nm = cf->attrs.names[i];
    if (nm->len == strlen(name) && memcmp(nm->ptr, name, nm->len) == 0) {
      if (cf->attrs.types[i] != XLA_FFI_AttrType_SCALAR) return 0;
      const XLA_FFI_Scalar *sc = (const XLA_FFI_Scalar *)cf->attrs.attrs[i];
      switch (sc->dtype) {
        case XLA_FFI_DataType_S32: *out = *(const int32_t *)sc->value; return 1;
        case XLA_FFI_DataType_S64: *out = *(const int64_t *)sc->value; return 1;
        default: return 0;
      }
    }
  }
  return 0;
}

/* args: X (g, N), cat (g,) u8, Z (N, k), valid (N,) (1 on the first n rows);
 * attrs: out_linear, want_gamma, nthreads (int32);
 * rets: sums (5, g), scal (2,), gvec (3, g, N), nvec (2, N), all of X's dtype. */
XLA_FFI_Error *hsens_hsic_pass_ffi(XLA_FFI_CallFrame *cf) {
  if (cf->extension_start != NULL && cf->extension_start->type == XLA_FFI_Extension_Metadata) {
    XLA_FFI_Metadata_Extension *ext = (XLA_FFI_Metadata_Extension *)cf->extension_start;
    ext->metadata->api_version.struct_size = XLA_FFI_Api_Version_STRUCT_SIZE;
    ext->metadata->api_version.extension_start = NULL;
    ext->metadata->api_version.major_version = XLA_FFI_API_MAJOR;
    ext->metadata->api_version.minor_version = XLA_FFI_API_MINOR;
    ext->metadata->traits = 0;
    ext->metadata->state_type_id.type_id = 0; /* XLA_FFI_UNKNOWN_TYPE_ID */
    return NULL;
  }
  if (cf->stage != XLA_FFI_ExecutionStage_EXECUTE) return NULL;
  const XLA_FFI_Api *api = cf->api;
  if (cf->args.size != 4 || cf->rets.size != 4) return ffi_error(api, "hsens_hsic_pass: 4 arguments, 4 results");
  XLA_FFI_Buffer *b[4], *r[4];
  for (int i = 0; i < 4; i++) {
    if (cf->args.types[i] != XLA_FFI_ArgType_BUFFER) return ffi_error(api, "hsens_hsic_pass: buffers only");
    b[i] = (XLA_FFI_Buffer *)cf->args.args[i];
  }
  for (int i = 0; i < 4; i++) r[i] = (XLA_FFI_Buffer *)cf->rets.rets[i];
  if (b[0]->rank != 2 || b[1]->rank != 1 || b[2]->rank != 2 || b[3]->rank != 1)
    return ffi_error(api, "hsens_hsic_pass: X (g, N), cat (g,), Z (N, k), valid (N,)");
  const int64_t g = b[0]->dims[0], N = b[0]->dims[1], k = b[2]->dims[1];
  if (b[1]->dims[0] != g || b[2]->dims[0] != N || b[3]->dims[0] != N)
    return ffi_error(api, "hsens_hsic_pass: inconsistent shapes");
  if (b[1]->dtype != XLA_FFI_DataType_U8) return ffi_error(api, "hsens_hsic_pass: cat must be uint8");
  int64_t out_linear = 0, want_gamma = 0, nthreads = 1;
  if (!attr_int(cf, "out_linear", &out_linear) || !attr_int(cf, "want_gamma", &want_gamma) ||
      !attr_int(cf, "nthreads", &nthreads))
    return ffi_error(api, "hsens_hsic_pass: integer attributes out_linear, want_gamma, nthreads");
  const XLA_FFI_DataType dt = b[0]->dtype;
  if (b[2]->dtype != dt || b[3]->dtype != dt) return ffi_error(api, "hsens_hsic_pass: X, Z, valid: one dtype");
  int64_t n = 0;
  int err;
  if (dt == XLA_FFI_DataType_F32) {
    const float *v = b[3]->data;
    while (n < N && v[n] > 0) n++;
    err = hsic_pass_f32(b[0]->data, b[1]->data, g, N, b[2]->data, k, (int)out_linear, n,
                        (int)want_gamma, (int)nthreads, r[0]->data, r[1]->data, r[2]->data,
                        r[3]->data);
  } else if (dt == XLA_FFI_DataType_F64) {
    const double *v = b[3]->data;
    while (n < N && v[n] > 0) n++;
    err = hsic_pass_f64(b[0]->data, b[1]->data, g, N, b[2]->data, k, (int)out_linear, n,
                        (int)want_gamma, (int)nthreads, r[0]->data, r[1]->data, r[2]->data,
                        r[3]->data);
  } else {
    return ffi_error(api, "hsens_hsic_pass: float32 or float64 only");
  }
  if (err) return ffi_error(api, "hsens_hsic_pass: out of memory");
  return NULL;
}
