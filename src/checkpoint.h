// checkpoint.h: one HDF5 file per save, written so that a crash, a full disk or a killed
// job never leaves a checkpoint that looks good but is not.
//
// ## Checkpoint files (docs text, for docs/FORMATS.md)
//
// A checkpoint directory holds
//
//     ckpt-00001000.h5     one file per save, named by the step (8 digits, zero-padded)
//     latest               text: the file name of the last checkpoint all ranks agreed on,
//                          then a newline ("ckpt-00001000.h5\n")
//
// Each ckpt-STEP.h5 (HDF5 1.8+ file format, so object headers carry checksums) contains:
//
//     /params/NAME   float32, the parameter's shape (e.g. [768, 3072], or [bs, nf+1, ob, ib]
//                    for a Pixelfly S), one dataset per parameter of the model's layout,
//                    NAME as in the layout ("h.3.mlp.fc1.S"); no alignment gaps
//     /opt/m/NAME    float32, same shape: AdamW first moment
//     /opt/v/NAME    float32, same shape: AdamW second moment
//     /step          int64 [1]: optimizer steps taken (the next step is step + 1)
//     /rng           uint64 [world, K]: each rank's RNG state, K words per rank, opaque
//                    to the file format (the trainer defines the words)
//     /cursors       int64 [world, 2]: each rank's data position (epoch, batch)
//     /data_items    int64 [1]: the items (token windows, images) of the training split the
//                    cursors count in; absent in checkpoints written before it existed
//     /config        fixed-length string [1] (NUL-padded, ASCII/UTF-8): the resolved
//                    configuration text the run used
//     /masks/NAME    int32 [bs, blocks]: the random block mask of each blocksparse layer,
//                    NAME its S parameter ("h.0.mlp.fc1.S"); entry [p, k] is the
//                    super-column of super-row p at slot k (pattern.h). Absent when the model
//                    has none. A loaded model uses these, whatever this build would draw.
//   attributes on the root group:
//     format_version    int32, 1
//     world_size        int32, the number of ranks that wrote it (= first dim of /rng)
//     pixelfly_version  string, e.g. "0.1.0"
//
// Every dataset is chunked (chunks of at most 1 MiB) with the fletcher32 checksum filter,
// so a flipped bit in the data fails the read instead of loading garbage. /step and /config
// are 1-element arrays rather than scalars because HDF5 can only checksum chunked data.
// Reading with h5py: f["params/h.0.attn.q.S"][...], f["step"][0], f["config"][0].decode().
//
// Saving: build the file in memory (HDF5's core driver; host memory of the file size, ~12
// bytes per parameter), write it to ckpt-STEP.h5.tmp, fsync it, rename to ckpt-STEP.h5, fsync
// the directory. Only after every rank agreed the save succeeded does the trainer call
// pf_checkpoint_commit, which rewrites `latest` the same way (latest.tmp, fsync, rename,
// fsync the directory) and deletes older checkpoints beyond the last K. On any failure the
// temporary file is removed and the previous checkpoint and `latest` are untouched. A NaN or
// infinity in any parameter or moment is such a failure (nothing is written), so no checkpoint
// holds a diverged model.
//
// Two parts: the file format (checkpoint.c: save, check_finite, verify, load, read_config)
// and the directory policy (checkpoint_dir.c: path, commit with keep-K rotation, any,
// find_resume).
#ifndef PF_CHECKPOINT_H
#define PF_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"

#define PF_CHECKPOINT_FORMAT_VERSION 1

// The most masks a checkpoint holds (one per blocksparse layer; PF_MAX_LINEARS bounds it).
#define PF_CHECKPOINT_MAX_MASKS 8192

// One blocksparse layer's random mask.
typedef struct {
    char name[PF_PARAM_NAME_MAX];  // the layer's S parameter
    int rows, cols;                // bs, blocks per super-row (rows * cols <= 2048)
    int32_t *col;                  // [rows, cols]
} pf_checkpoint_mask;

// Everything besides the arenas. For save the caller owns the arrays; load allocates them
// (free with pf_checkpoint_state_free).
typedef struct {
    int64_t step;
    int world;          // ranks
    int rng_words;      // K >= 1: words of RNG state per rank
    uint64_t *rng;      // [world, rng_words]
    int64_t *cursors;   // [world, 2]: epoch, batch of each rank
    int64_t data_items; // of the training split; 0 = not recorded (not written when 0)
    char *config_text;  // the resolved configuration, NUL-terminated
    int n_masks;        // /masks: the blocksparse layers' masks
    pf_checkpoint_mask *masks;
    // Save only: write non-finite values too. By default pf_checkpoint_save refuses a NaN or
    // infinity anywhere in params, m or v, so a diverged model never becomes a checkpoint.
    bool allow_nonfinite;
} pf_checkpoint_state;

void pf_checkpoint_state_free(pf_checkpoint_state *st);

// "DIR/ckpt-00001000.h5" into out[cap]; -1 with pf_error() if it does not fit.
int pf_checkpoint_path(char *out, size_t cap, const char *dir, int64_t step);

// Writes DIR/ckpt-STEP.h5 (creating DIR and its parents if missing) from host buffers of
// layout->numel floats each: params, m, v (gaps are not stored). Does not touch `latest`.
// Returns 0, or -1 with pf_error() naming the file and what failed; then no ckpt-STEP.h5 or
// .tmp is left behind and older files are untouched. A non-finite value in any parameter of
// the three arenas is such a failure (pf_checkpoint_check_finite's message) unless
// st->allow_nonfinite. One rank writes (all hold the same
// parameters after the all-reduce); the trainer gathers rng and cursors to it first.
int pf_checkpoint_save(const char *dir, const pf_layout *layout, const float *params,
                       const float *m, const float *v, const pf_checkpoint_state *st);

// Whether every parameter of `arena` (layout->numel floats on the host; gaps are not looked
// at) is finite. 0, or -1 with pf_error() naming the group (`what`, e.g. "params"), the
// parameter, the element and its value.
int pf_checkpoint_check_finite(const pf_layout *layout, const float *arena, const char *what);

// Points DIR/latest at ckpt-STEP.h5 atomically, then deletes stale ckpt-*.h5.tmp files and
// older checkpoints so that the committed one and the keep-1 newest before it remain
// (keep <= 0: delete none). Checkpoints with a step above `step` (saved but never committed,
// or from a run that was rewound) are left alone. Returns 0 or -1 with pf_error().
int pf_checkpoint_commit(const char *dir, int64_t step, int keep);

// Checks that the file at `path` is a complete checkpoint of `layout`: every dataset present
// with the layout's shapes and no parameter the layout lacks, all data readable with good
// checksums. Returns 0, or -1 with pf_error() naming the file and the dataset.
int pf_checkpoint_verify(const char *path, const pf_layout *layout);

// Verifies (as above), then reads the parameters into params, and the moments into m and v
// (each layout->numel floats on the host; m and v may be NULL to skip them; gap elements are
// not written), and the rest into *st. On -1 (pf_error() names the file and the dataset) the
// caller's buffers and *st are untouched. Reads the file twice for that guarantee, which
// costs a second pass over the page cache and no extra memory.
int pf_checkpoint_load(const char *path, const pf_layout *layout, float *params, float *m,
                       float *v, pf_checkpoint_state *st);

// Whether DIR holds checkpoints: a ckpt-*.h5 file or `latest` (stale .tmp files do not count).
// False when DIR does not exist.
bool pf_checkpoint_any(const char *dir);

// The caller's say on a candidate checkpoint before it is verified (the trainer compares the
// configuration stored in it with its own): 0 to go on, -1 with pf_error() saying why not.
typedef int (*pf_checkpoint_accept_fn)(void *ctx, const char *path);

// What pf_checkpoint_find_resume found.
enum {
    PF_RESUME_FOUND = 1,      // path_out names the checkpoint to resume from
    PF_RESUME_NONE = 0,       // DIR holds no checkpoint (pf_checkpoint_any): a fresh start
    PF_RESUME_ERROR = -1,     // DIR exists but cannot be listed (pf_error())
    PF_RESUME_UNUSABLE = -2,  // DIR holds checkpoints and none can be resumed from (see msg)
};

// `--resume auto`: picks the checkpoint to resume from in DIR. Tries the file `latest` names
// first; if that is missing, refused by `accept` (when not NULL) or fails
// pf_checkpoint_verify, the newest ckpt-*.h5 that passes both (only those older than the one
// `latest` names, when it names one: newer files were never committed). Writes the chosen path
// to path_out[path_cap]. Returns a PF_RESUME_* value. msg[msg_cap] receives one line per
// checkpoint skipped and why ("skipped: checkpoint 'DIR/ckpt-00002000.h5': ..."), and per
// unusable `latest`, empty when none was.
int pf_checkpoint_find_resume(const char *dir, const pf_layout *layout,
                              pf_checkpoint_accept_fn accept, void *ctx, char *path_out,
                              size_t path_cap, char *msg, size_t msg_cap);

// The resolved configuration text stored in the checkpoint at `path` (malloc'd into *text),
// to rebuild the model before loading it. -1 with pf_error() naming the file.
int pf_checkpoint_read_config(const char *path, char **text);

#endif
