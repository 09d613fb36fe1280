// fuzz_tokenizer: GPT-2 BPE encoding of arbitrary bytes with the real vocabulary
// ($PIXELFLY_DATA/gpt2, loaded once). The first input byte picks a chunk size for the
// streaming form, the rest is the text. Properties (tokenizer.h):
//   - pf_tokenizer_encode succeeds exactly when the text is valid UTF-8 (pf_utf8_prefix);
//   - every id is in [0, vocab_size), and decoding the ids gives back the text;
//   - pf_tokenizer_encode_stream fed in chunks (as `pfdata text` does) gives the same ids,
//     and fails exactly when the whole-text encoding fails.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "fuzz.h"
#include "tokenizer.h"

static pf_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/gpt2", fuzz_data_dir());
    if (!(tok = pf_tokenizer_load(dir))) {
        fprintf(stderr, "fuzz_tokenizer: cannot load the GPT-2 vocabulary: %s\n", pf_errmsg());
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 1 << 16) return 0;
    size_t chunk = 1 + data[0] % 64;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    pf_ids whole = {0};
    int rc = pf_tokenizer_encode(tok, text, len, &whole);
    bool valid = pf_utf8_prefix(text, len, NULL) == len;
    FUZZ_CHECK((rc == 0) == valid);
    int V = pf_tokenizer_vocab_size(tok);
    for (size_t i = 0; rc == 0 && i < whole.n; i++)
        FUZZ_CHECK(whole.data[i] >= 0 && whole.data[i] < V);
    if (rc == 0) {
        size_t dlen = 0;
        char *back = pf_tokenizer_decode(tok, whole.data, whole.n, &dlen);
        FUZZ_CHECK(back && dlen == len && (len == 0 || memcmp(back, text, len) == 0));
        free(back);
    }

    // The streaming form, as text_cmd.c drives it: keep the unconsumed tail, append a chunk.
    pf_ids streamed = {0};
    char *buf = malloc(len + 1);
    size_t have = 0, pos = 0;
    int src = 0;
    for (;;) {
        size_t add = len - pos < chunk ? len - pos : chunk;
        memcpy(buf + have, text + pos, add);
        have += add, pos += add;
        bool final = pos == len;
        size_t consumed = 0;
        src = pf_tokenizer_encode_stream(tok, buf, have, final, &streamed, &consumed);
        if (src != 0) break;
        FUZZ_CHECK(consumed <= have && (!final || consumed == have));
        memmove(buf, buf + consumed, have - consumed);
        have -= consumed;
        if (final) break;
    }
    free(buf);
    FUZZ_CHECK((src == 0) == valid);
    if (rc == 0) {
        FUZZ_CHECK(streamed.n == whole.n);
        FUZZ_CHECK(whole.n == 0 ||
                   memcmp(streamed.data, whole.data, whole.n * sizeof *whole.data) == 0);
    }
    pf_ids_free(&whole);
    pf_ids_free(&streamed);
    return 0;
}
