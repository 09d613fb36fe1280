// text_shard.h: the HDF5 token shard, written by `pfdata text` and read by the token loader.
//
// Format (version 1); one file per split (train.h5, val.h5):
//   /tokens      dataset, 1-D, the token ids of all input files in order, each file followed
//                by eot_token. Type H5T_STD_U16LE, or H5T_STD_U32LE when vocab_size > 65535.
//                Chunked (at most 2^20 tokens per chunk, fewer for small inputs), extendible
//                (maximum dimension unlimited), no filters, so any window is one direct read.
//   Attributes of the root group "/":
//     vocab_size      int32 scalar    number of token ids (50257 for GPT-2)
//     eot_token       int32 scalar    the end-of-text id between documents (50256 for GPT-2)
//     tokenizer       string          "gpt2-bpe"
//     source          string          the input file names, as given, one per line
//     format_version  int32 scalar    1
//   Strings are variable-length UTF-8. A reader needs /tokens, vocab_size and eot_token;
//   every id in /tokens is below vocab_size.
//
// Writing is atomic: the file is built as PATH.tmp.PID, fsync'd, then renamed to PATH. On
// failure or abort the temporary is removed, and a PATH that existed before is untouched;
// pfdata's SIGINT/SIGTERM handler removes it too (the writer names it there: interrupt.h).
#ifndef PF_TEXT_SHARD_H
#define PF_TEXT_SHARD_H

#include <stddef.h>
#include <stdint.h>

#define PF_TEXT_SHARD_VERSION 1
#define PF_TEXT_SHARD_MAX_CHUNK (1 << 20)  // tokens per HDF5 chunk

typedef struct pf_text_shard_writer pf_text_shard_writer;

// Starts PATH.tmp.PID. chunk_tokens: HDF5 chunk length, clamped to [1, MAX_CHUNK] (pass an
// upper bound on the token count for small shards so they stay small). NULL + pf_error if the
// temporary cannot be created (names the file and the system's reason).
pf_text_shard_writer *pf_text_shard_create(const char *path, int vocab_size, int eot_token,
                                           const char *tokenizer, const char *source,
                                           int64_t chunk_tokens);
// Appends ids (each in [0, vocab_size)); -1 + pf_error on a write failure or a bad id.
int pf_text_shard_append(pf_text_shard_writer *w, const int32_t *ids, size_t n);
int64_t pf_text_shard_count(const pf_text_shard_writer *w);  // ids appended so far
// Flushes, fsyncs and renames the temporary to PATH; frees w either way. On failure: -1 +
// pf_error, and the temporary is removed.
int pf_text_shard_commit(pf_text_shard_writer *w);
// Drops the temporary and frees w (NULL is fine).
void pf_text_shard_abort(pf_text_shard_writer *w);

typedef struct pf_text_shard pf_text_shard;

// Opens a shard for reading. NULL + pf_error naming the file when it is missing, not HDF5,
// truncated, not a token shard, or lacks an attribute.
pf_text_shard *pf_text_shard_open(const char *path);
void pf_text_shard_close(pf_text_shard *s);
int64_t pf_text_shard_num_tokens(const pf_text_shard *s);
int pf_text_shard_vocab_size(const pf_text_shard *s);
int pf_text_shard_eot(const pf_text_shard *s);
const char *pf_text_shard_tokenizer(const pf_text_shard *s);  // "" when absent
const char *pf_text_shard_source(const pf_text_shard *s);     // "" when absent
// Reads ids [start, start + count) into dst: [count]. -1 + pf_error on a read failure (a
// corrupt file) or an id outside [0, vocab_size).
int pf_text_shard_read(pf_text_shard *s, int64_t start, int64_t count, int32_t *dst);

#endif
