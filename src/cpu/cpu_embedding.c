// cpu_embedding.c: token + position embedding lookup and its scatter-add backward.
#include <string.h>

#include "cpu_ops.h"

typedef struct {
    int64_t BT, T, C, vocab;
} emb_dims;

static emb_dims check_dims(pf_tensor y, pf_tensor ids, pf_tensor wte, pf_tensor wpe) {
    CPU_I32(ids);
    PF_ASSERT(ids.ndim == 2 && wte.ndim == 2);
    emb_dims d = {pf_numel(ids), ids.shape[1], wte.shape[1], wte.shape[0]};
    PF_ASSERT(cpu_rows(y) == d.BT && cpu_cols(y) == d.C);
    PF_ASSERT(!pf_present(wpe) || (wpe.ndim == 2 && wpe.shape[0] >= d.T && wpe.shape[1] == d.C));
    const int32_t *ID = ids.data;
    for (int64_t i = 0; i < d.BT; i++)
        if (ID[i] < 0 || ID[i] >= d.vocab)
            PF_FATAL("token id %d at position %ld is outside the vocabulary [0, %ld)", ID[i],
                     (long)i, (long)d.vocab);
    return d;
}

// y[B,T,C] = wte[ids[b,t]] + wpe[t]  (wpe optional). ids: [B,T] int32.
void cpu_embedding_fwd(pf_tensor y, pf_tensor ids, pf_tensor wte, pf_tensor wpe) {
    CPU_F32(y);
    CPU_F32(wte);
    CPU_F32_OPT(wpe);
    emb_dims d = check_dims(y, ids, wte, wpe);
    const int32_t *ID = ids.data;
    const float *WTE = cpu_f(wte), *WPE = cpu_f(wpe);
    float *Y = cpu_f(y);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < d.BT; i++) {
        const float *e = WTE + (int64_t)ID[i] * d.C;
        float *yr = Y + i * d.C;
        if (WPE) {
            const float *pe = WPE + (i % d.T) * d.C;
            for (int64_t c = 0; c < d.C; c++) yr[c] = e[c] + pe[c];
        } else {
            memcpy(yr, e, sizeof(float) * d.C);
        }
    }
}

// dwte[ids[b,t]] += dy[b,t];  dwpe[t] += sum_b dy[b,t].
// Repeated ids make the token scatter a reduction, so it is split over channels, not
// tokens: each thread owns a block of columns and visits the tokens in order.
void cpu_embedding_bwd(pf_tensor dwte, pf_tensor dwpe, pf_tensor dy, pf_tensor ids) {
    CPU_F32(dy);
    CPU_F32_OPT(dwte);
    CPU_F32_OPT(dwpe);
    int64_t BT = pf_numel(ids);
    const int32_t *ID = ids.data;
    const float *DY = cpu_f(dy);
    if (pf_present(dwte)) {
        emb_dims d = check_dims(dy, ids, dwte, dwpe);
        float *DW = cpu_f(dwte);
#pragma omp parallel for schedule(static)
        for (int64_t c0 = 0; c0 < d.C; c0 += CPU_COLBLOCK) {
            int64_t nc = d.C - c0 < CPU_COLBLOCK ? d.C - c0 : CPU_COLBLOCK;
            for (int64_t i = 0; i < BT; i++) {
                float *w = DW + (int64_t)ID[i] * d.C + c0;
                const float *g = DY + i * d.C + c0;
                for (int64_t c = 0; c < nc; c++) w[c] += g[c];
            }
        }
    }
    if (pf_present(dwpe)) {
        CPU_I32(ids);
        PF_ASSERT(ids.ndim == 2 && dwpe.ndim == 2 && dwpe.shape[0] >= ids.shape[1]);
        int64_t T = ids.shape[1], C = dwpe.shape[1], B = BT / T;
        PF_ASSERT(cpu_rows(dy) == BT && cpu_cols(dy) == C);
        float *DP = cpu_f(dwpe);
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < T; t++)
            for (int64_t b = 0; b < B; b++)
                for (int64_t c = 0; c < C; c++) DP[t * C + c] += DY[(b * T + t) * C + c];
    }
}
