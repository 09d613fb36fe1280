// tokenizer.h: GPT-2's byte-level BPE tokenizer (openai/gpt-2 encoder.py), byte-exact with
// the reference on any valid UTF-8 text.
//
// Encoding: the text is cut into pre-tokens by GPT-2's regex (PCRE2, Unicode classes),
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// each pre-token's bytes start as single-byte tokens, and the lowest-ranked adjacent pair of
// vocab.bpe is merged (all its occurrences, left to right) until no pair has a rank; this
// takes O(n log n) in a pre-token's length n (a heap of candidate pairs), not the
// reference's O(n) per merge.
// Ids come from encoder.json, whose keys spell token bytes in GPT-2's printable byte alphabet
// (bytes_to_unicode). A text containing "<|endoftext|>" encodes it as ordinary text; the
// end-of-text id is only ever inserted by the caller.
//
// A pf_tokenizer is not thread-safe (it owns a match buffer and a per-word cache); use one
// per thread.
#ifndef PF_TOKENIZER_H
#define PF_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pf_tokenizer pf_tokenizer;

// A growable array of token ids; zero-initialise, free with pf_ids_free.
typedef struct {
    int32_t *data;
    size_t n, cap;
} pf_ids;

void pf_ids_push(pf_ids *v, int32_t id);
void pf_ids_free(pf_ids *v);

// Loads DIR/encoder.json and DIR/vocab.bpe. NULL + pf_error naming the file (and the line
// or key) on a missing or malformed vocabulary.
pf_tokenizer *pf_tokenizer_load(const char *vocab_dir);
void pf_tokenizer_free(pf_tokenizer *t);

int pf_tokenizer_vocab_size(const pf_tokenizer *t);  // 50257 for GPT-2
int pf_tokenizer_eot(const pf_tokenizer *t);         // id of <|endoftext|>: 50256 for GPT-2

// Appends the ids of text[0, len) to out. -1 + pf_error("invalid UTF-8 at byte offset N")
// when the text is not valid UTF-8.
int pf_tokenizer_encode(pf_tokenizer *t, const char *text, size_t len, pf_ids *out);

// Streaming form, for files larger than memory: appends the ids of the longest prefix of
// text whose tokens cannot change whatever text follows, and sets *consumed to its length
// in bytes; the caller keeps text[*consumed, len), appends more input and calls again.
// With final set, the text is the end of the input and is encoded whole (*consumed = len).
// Concatenating the outputs gives exactly pf_tokenizer_encode of the whole input.
// On invalid UTF-8: -1, pf_error, and *consumed = the offset of the bad byte in text; also
// -1 + pf_error on a single pre-token of 4 GiB or more (*consumed = its start).
int pf_tokenizer_encode_stream(pf_tokenizer *t, const char *text, size_t len, bool final,
                               pf_ids *out, size_t *consumed);

// The bytes of one token (not NUL-terminated; *len set), or NULL for an id out of range.
const char *pf_tokenizer_token(const pf_tokenizer *t, int32_t id, size_t *len);

// The concatenated bytes of ids[0, n), NUL-terminated, length in *len (may be NULL); the
// caller frees it. NULL + pf_error on an id out of range.
char *pf_tokenizer_decode(const pf_tokenizer *t, const int32_t *ids, size_t n, size_t *len);

// Strict UTF-8 check, as Python decodes (no overlong forms, surrogates or code points past
// U+10FFFF). Returns the length of the longest valid prefix of s; *truncated (may be NULL)
// tells whether the rest is the valid start of a character cut by the end of the buffer
// (more input may complete it) rather than an invalid byte.
size_t pf_utf8_prefix(const char *s, size_t len, bool *truncated);

#endif
