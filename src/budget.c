#include "budget.h"

#include "common.h"

// Sparse part for density d: the smallest candidate bs (step 1) with 2/bs <= d, or 0.
static int pick_bs(int out, int in, double d, int *bs_max) {
    int pick = 0;
    *bs_max = 0;
    for (int64_t bs = 4; bs <= out && bs <= in; bs *= 2) {  // bs 2, nf 1 is dense
        if (out % bs || in % bs || out / bs < PF_BUDGET_MIN_BLOCK || in / bs < PF_BUDGET_MIN_BLOCK)
            continue;
        *bs_max = (int)bs;
        if (!pick && 2.0 / (double)bs <= d) pick = (int)bs;
    }
    return pick;
}

static int round8(double r) { return r < 8 ? 0 : (int)(r / 8) * 8; }

int pf_budget_pattern(const char *layer, int out, int in, double budget, pf_layer_spec *spec) {
    PF_ASSERT(budget > 0 && budget < 1);
    double dense = (double)out * in, P = budget * dense;
    int r = round8(P / 4 / (out + in)), bs_max, bs = 0;
    for (int attempt = 0; attempt < 2 && !bs; attempt++) {
        if (attempt) r = 0;
        bs = pick_bs(out, in, (P - (double)r * (out + in)) / dense, &bs_max);
    }
    if (!bs) {
        if (!bs_max)
            pf_error("pixelfly.budget = %g: layer %s (%d -> %d) has no block size whose "
                     "blocks are at least %d x %d; keep it dense (set its pixelfly.* key to "
                     "dense) or give it a pattern by hand", budget, layer, in, out,
                     PF_BUDGET_MIN_BLOCK, PF_BUDGET_MIN_BLOCK);
        else
            pf_error("pixelfly.budget = %g is below what layer %s (%d -> %d) can keep: its "
                     "sparsest pattern (bs=%d nf=1 rank=0) keeps %.4g; use pixelfly.budget >= "
                     "%.4g, or keep the layer dense (set its pixelfly.* key to dense)",
                     budget, layer, in, out, bs_max, 2.0 / bs_max, 2.0 / bs_max);
        return -1;
    }
    int log2bs = 0;
    while ((1 << log2bs) < bs) log2bs++;
    double d = (P - (double)r * (out + in)) / dense;
    int nf = (int)(d * bs + 1e-9) - 1;
    if (nf > log2bs) nf = log2bs;
    double sparse = dense * (nf + 1) / bs;
    r = round8((P - sparse) / (out + in));
    int maxr = out < in ? out : in;
    if (r > maxr) r = maxr / 8 * 8;
    *spec = (pf_layer_spec){.kind = PF_LAYER_PIXELFLY, .bs = bs, .nf = nf, .rank = r};
    return 0;
}
