#include "arena.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common.h"

void pf_layout_init(pf_layout *l) { memset(l, 0, sizeof *l); }

void pf_layout_free(pf_layout *l) {
    free(l->params);
    memset(l, 0, sizeof *l);
}

int64_t pf_param_numel(const pf_param_info *p) {
    int64_t n = 1;
    for (int i = 0; i < p->ndim; i++) n *= p->shape[i];
    return n;
}

int pf_layout_find(const pf_layout *l, const char *name) {
    for (int i = 0; i < l->count; i++)
        if (!strcmp(l->params[i].name, name)) return i;
    return -1;
}

int pf_layout_add(pf_layout *l, const char *name, int ndim, const int64_t *shape, bool no_decay) {
    PF_ASSERT(ndim >= 1 && ndim <= PF_MAX_DIMS);
    PF_ASSERT(strlen(name) < PF_PARAM_NAME_MAX);
    PF_ASSERT(pf_layout_find(l, name) < 0);
    if (l->count == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->params = pf_realloc(l->params, (size_t)l->cap * sizeof *l->params);
    }
    pf_param_info *p = &l->params[l->count];
    memset(p, 0, sizeof *p);
    strcpy(p->name, name);
    p->ndim = ndim;
    memcpy(p->shape, shape, sizeof(int64_t) * ndim);
    p->no_decay = no_decay;
    p->offset = l->numel;
    int64_t n = pf_param_numel(p);
    l->numel += (n + PF_PARAM_ALIGN - 1) / PF_PARAM_ALIGN * PF_PARAM_ALIGN;
    return l->count++;
}

int64_t pf_layout_param_count(const pf_layout *l) {
    int64_t n = 0;
    for (int i = 0; i < l->count; i++) n += pf_param_numel(&l->params[i]);
    return n;
}

void pf_arena_alloc(pf_arena *a, const pf_layout *l, const pf_backend *be) {
    size_t bytes = sizeof(float) * (size_t)l->numel;
    a->layout = l;
    a->be = be;
    float **bufs[4] = {&a->params, &a->grads, &a->m, &a->v};
    for (int i = 0; i < 4; i++) {
        *bufs[i] = be->alloc(bytes);
        be->zero(*bufs[i], bytes);
    }
    a->weights = a->params;
    if (be->act_dtype != PF_F32) {
        size_t wbytes = (size_t)pf_dtype_size(be->act_dtype) * (size_t)l->numel;
        a->weights = be->alloc(wbytes);
        be->zero(a->weights, wbytes);
    }
}

void pf_arena_free(pf_arena *a) {
    if (!a->be) return;
    if (a->weights != a->params) a->be->free(a->weights);
    float *bufs[4] = {a->params, a->grads, a->m, a->v};
    for (int i = 0; i < 4; i++) a->be->free(bufs[i]);
    memset(a, 0, sizeof *a);
}

pf_tensor pf_arena_view(const pf_arena *a, const float *base, int idx) {
    if (idx < 0) return pf_none();
    const pf_param_info *p = &a->layout->params[idx];
    pf_tensor t = {.data = (void *)(base + p->offset), .dtype = PF_F32,
                   .device = a->be->device, .ndim = p->ndim};
    memcpy(t.shape, p->shape, sizeof(int64_t) * p->ndim);
    return t;
}

pf_tensor pf_arena_weight(const pf_arena *a, int idx) {
    if (idx < 0) return pf_none();
    pf_dtype dt = a->be->act_dtype;
    pf_tensor t = pf_arena_view(a, a->params, idx);
    t.dtype = dt;
    t.data = (char *)a->weights + (size_t)pf_dtype_size(dt) * a->layout->params[idx].offset;
    return t;
}

void pf_arena_sync_weights(const pf_arena *a) {
    if (a->weights == (void *)a->params) return;
    int64_t n = a->layout->numel;
    a->be->convert(pf_tensor_1d(a->weights, a->be->act_dtype, a->be->device, n),
                   pf_tensor_1d(a->params, PF_F32, a->be->device, n));
}
