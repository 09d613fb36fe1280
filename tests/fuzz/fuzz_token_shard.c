// fuzz_token_shard: the token shard reader (datasets/text_shard.h) and the token loader
// that training reads it through, on the input written to a temporary .h5 file.
// pf_text_shard_open, then pf_text_shard_read of (at most) the first 4096 tokens, then
// pf_token_loader_open with B = 2, T = 8 and two batches. Properties: every id read is in
// [0, vocab_size) and eot < vocab_size. A shard announcing more than 2^20 tokens is read
// only through its first window (the loader's permutation is 4 bytes per window by design,
// so a forged size would only measure the allocator).
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fuzz.h"
#include "text_shard.h"
#include "token_loader.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_quiet_hdf5();
    return 0;
}

static void run(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_fresh("tokens.h5", data, size);
    pf_text_shard *s = pf_text_shard_open(path);
    (void)pf_errmsg();
    if (!s) return;
    int V = pf_text_shard_vocab_size(s), eot = pf_text_shard_eot(s);
    FUZZ_CHECK(V > 0 && eot >= 0 && eot < V);
    (void)strlen(pf_text_shard_tokenizer(s));
    (void)strlen(pf_text_shard_source(s));
    int64_t n = pf_text_shard_num_tokens(s);
    FUZZ_CHECK(n >= 0);
    int64_t k = n < 4096 ? n : 4096;
    int32_t *ids = malloc(sizeof *ids * (size_t)(k ? k : 1));
    if (pf_text_shard_read(s, 0, k, ids) == 0)
        for (int64_t i = 0; i < k; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < V);
    if (k > 1 && pf_text_shard_read(s, n - 2, 2, ids) == 0)  // the tail: the last chunk
        FUZZ_CHECK(ids[0] >= 0 && ids[0] < V && ids[1] >= 0 && ids[1] < V);
    free(ids);
    pf_text_shard_close(s);
    if (n > (1 << 20)) return;

    const int B = 2, T = 8;
    pf_token_loader *l = pf_token_loader_open(path, B, T, 0, 1, 7, true, false);
    (void)pf_errmsg();
    if (!l) return;
    int32_t in[B * T], tg[B * T];
    for (int step = 0; step < 2; step++) {
        if (pf_token_loader_next(l, in, tg) != 0) break;
        for (int i = 0; i < B * T; i++) FUZZ_CHECK(in[i] >= 0 && in[i] < V && tg[i] < V);
    }
    pf_token_loader_close(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    run(data, size);
    fuzz_check_hdf5_closed();
    return 0;
}
