// op_cases.h: the op-test case table, shared by the three op-test drivers and free of Check
// (the GPU machines lack it). Adding an op's tests is adding its cases here (op_cases.c):
//
//   - op_fd_cases[]: small shapes, each with a builder (seeded host inputs: op_ctx.rng), the
//     op's forward and backward through a pf_backend table (op_ctx.be, a host-memory fp32
//     backend) and a naive double-precision forward. tests/test_ops.c checks the CPU backend
//     against the reference, by central finite differences of L = sum(out * R) for every
//     gradient, and for bit-identical reruns.
//   - op_cmp_cases[]: shapes up to model size (tile edges, one token, no tokens, GPT-2 and ViT
//     sizes), each run on a tested backend and on the CPU backend from the same inputs, in
//     fp32 and bf16 activations, with per-output tolerances (TOL, BF16_TOL in op_cases.c).
//     tests/gpu/test_cuda_ops.c runs them on CUDA (and under emulation, make test-emu),
//     tests/test_bf16.c on the bf16-emulating backend.
#ifndef PF_TEST_OP_CASES_H
#define PF_TEST_OP_CASES_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "pattern.h"
#include "rng.h"
#include "tensor.h"

// ---- finite-difference cases (op_fd_cases) -----------------------------------------------

#define MAX_BUFS 24
#define MAX_VARS 10

typedef struct {
    const char *name;
    float *x, *g;  // value and gradient; g NULL: no gradient requested (absent)
    int64_t n;     // 0: the variable is absent (no bias ...)
} grad_var;

typedef struct {
    const pf_backend *be;  // the backend the case runs on (host memory, fp32)
    grad_var var[MAX_VARS];
    float *out, *dout;  // the output the loss reads, and R = dL/dout
    int64_t nout;
    float *aux[4];      // saved state and scratch (mean/rstd, lse, xv/dxv)
    int32_t *ids;       // integer input (token ids, targets)
    pf_pattern pat, pat2;  // pixelfly (pat2: the Pixelfly MLP's second layer)
    float *bufs[MAX_BUFS];
    int64_t bufn[MAX_BUFS];
    int nbuf;
    pf_rng rng;
} op_ctx;

typedef struct op_case op_case;
struct op_case {
    const char *name;
    void (*build)(const op_case *oc, op_ctx *c);
    void (*fwd)(const op_case *oc, op_ctx *c);
    void (*bwd)(const op_case *oc, op_ctx *c);
    void (*ref)(const op_case *oc, op_ctx *c, double *out);  // naive forward in double
    int d[10];   // shapes and integer parameters, meaning per op
    float f;     // float parameter (label smoothing)
    bool flag;   // bias / causal / position embedding present
    bool no_dx;  // request no input gradient (absent dx)
    double tol;  // finite-difference tolerance on max|a-n| / max|n|
};

extern const op_case op_fd_cases[];
extern const int op_fd_ncases;

// The case's forward, then L = sum(out * dout) in double.
double op_fd_loss(const op_case *oc, op_ctx *c);
// "linear{5,7,3,0,0,0}+flag" ...
void op_fd_case_name(const op_case *oc, char *s, size_t len);
// Frees the case's buffers; the index of the first buffer whose guard words were overwritten
// (an out-of-bounds write), -1 when none was.
int op_fd_free(op_ctx *c);
// max|a - b| / max(max|b|, floor)
double rel_err(const float *a, const double *b, int64_t n, double floor);
// fp32 CPU tensors over host buffers; NULL data gives the absent tensor.
pf_tensor t1(float *p, int64_t a);
pf_tensor t2(float *p, int64_t a, int64_t b);
pf_tensor t3(float *p, int64_t a, int64_t b, int64_t c);
pf_tensor t4(float *p, int64_t a, int64_t b, int64_t c, int64_t d);
// The dense [out, in] matrix of a Pixelfly layer, masked S plus U V, in double (malloc'd).
double *pixelfly_dense(const pf_pattern *p, const float *S, const float *U, const float *V);

// ---- backend-against-CPU cases (op_cmp_cases) --------------------------------------------

typedef struct op_cmp_case op_cmp_case;
struct op_cmp_case {
    const char *family;  // as PF_GPU_TESTS selects it (op_cases.c, selected())
    void (*run)(pf_dtype dt, const op_cmp_case *k);
    int group;       // op_cmp_run_all: a group's cases in table order, in fp32 then bf16
    bool per_dtype;  // runs in fp32 and in bf16 activations; false: once, dtype in a[]
    double f;        // float parameter (label smoothing)
    int64_t a[12];   // shapes and parameters, meaning per family (op_cases.c)
};
extern const op_cmp_case op_cmp_cases[];
extern const int op_cmp_ncases;

// Every case on backend `dut` against the CPU, group by group. Prints one line per op call
// ("PASS name ... max rel err"), counted in n_pass / n_fail.
void op_cmp_run_all(const pf_backend *dut);
// Case i on `dut` in activation dtype dt (ignored by a once-only case); the failures it added.
int op_cmp_run(const pf_backend *dut, int i, pf_dtype dt);

// The machinery the cases report through, which the drivers' own checks (model steps,
// training) use too: a case is begin(name), checks that clear case_ok, end().
extern int n_pass, n_fail;
extern char case_name[256];
extern double case_err;
extern char case_worst[64];
extern bool case_ok;
extern uint64_t rng_state;  // urand's state
float urand(void);          // uniform in [-1, 1)
bool selected(const char *family);  // PF_GPU_TESTS names the family, or is unset
void begin(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void end(void);

#endif
