// cpu_embedding.c: token + position embedding lookup and its scatter-add backward.
#include <string.h>

#include "cpu_ops.h"

// Every token id of ids (int32, on the host) lies in [0, vocab).
static void check_ids(pf_tensor ids, int64_t vocab) {
    const int32_t *ID = ids.data;
    for (int64_t i = 0; i < pf_numel(ids); i++)
        if (ID[i] < 0 || ID[i] >= vocab)
            PF_FATAL("token id %d at position %ld is outside the vocabulary [0, %ld)", ID[i],
                     (long)i, (long)vocab);
}

// y[B,T,C] = wte[ids[b,t]] + wpe[t]  (wpe optional). ids: [B,T] int32.
void cpu_embedding_fwd(pf_tensor y, pf_tensor ids, pf_tensor wte, pf_tensor wpe) {
    CPU_F32(y);
    CPU_F32(wte);
    CPU_F32_OPT(wpe);
    CPU_I32(ids);
    pf_embedding_shape d = pf_shape_embedding(y, ids, wte, wpe);
    check_ids(ids, d.vocab);
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
    CPU_I32(ids);
    pf_embedding_shape d = pf_shape_embedding(dy, ids, dwte, dwpe);
    int64_t BT = d.BT, T = d.T, C = d.C;
    const int32_t *ID = ids.data;
    const float *DY = cpu_f(dy);
    if (pf_present(dwte)) {
        check_ids(ids, d.vocab);
        float *DW = cpu_f(dwte);
#pragma omp parallel for schedule(static)
        for (int64_t c0 = 0; c0 < C; c0 += CPU_COLBLOCK) {
            int64_t nc = C - c0 < CPU_COLBLOCK ? C - c0 : CPU_COLBLOCK;
            for (int64_t i = 0; i < BT; i++) {
                float *w = DW + (int64_t)ID[i] * C + c0;
                const float *g = DY + i * C + c0;
                for (int64_t c = 0; c < nc; c++) w[c] += g[c];
            }
        }
    }
    if (pf_present(dwpe)) {
        int64_t B = T ? BT / T : 0;
        float *DP = cpu_f(dwpe);
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < T; t++)
            for (int64_t b = 0; b < B; b++)
                for (int64_t c = 0; c < C; c++) DP[t * C + c] += DY[(b * T + t) * C + c];
    }
}
