// fuzz_checkpoint: the checkpoint reader (src/checkpoint.h), as `pftrain --resume` and
// `pftrain sample` use it, on the input written to a temporary DIR/ckpt-00000002.h5.
// pf_checkpoint_read_config and pf_config_load_string of the text it returns,
// then pf_checkpoint_load (verify, then read) against the layout of a tiny MLP-Mixer
// (MODEL_INI below; the seed checkpoint is what pftrain wrote for it), and the model adopting
// the blocksparse mask it holds (pf_model_adopt_masks). Properties: a load that succeeds
// returns a state that fits the format (world >= 1, K >= 1, a NUL-terminated config, masks
// within the table bounds), and one that fails leaves the caller's buffers untouched.
//
// PF_FUZZ_WRITE_MODEL_INI=PATH: write MODEL_INI to PATH and exit (tests/fuzz/make-seeds.sh
// trains the seed checkpoint on it).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "checkpoint.h"
#include "common.h"
#include "config.h"
#include "fuzz.h"
#include "models/model.h"
#include "pattern.h"

static const char MODEL_INI[] =
    "; The model of fuzz_checkpoint's layout: a one-block MLP-Mixer whose channel MLP is one\n"
    "; Pixelfly and one blocksparse layer (its mask is stored in the checkpoint).\n"
    "[model]\ntype = mixer\nn_layer = 1\nn_embd = 8\nn_head = 1\nimage_size = 4\n"
    "patch_size = 2\nchannels = 1\nnum_classes = 2\ntoken_mlp_dim = 4\nchannel_mlp_dim = 8\n"
    "\n[pixelfly]\nmlp_fc1 = bs=2 nf=1 rank=2\nmlp_fc2 = blocksparse bs=2 blocks=1 rank=2\n"
    "\n[train]\nbatch_size = 2\nsteps = 2\nwarmup_steps = 1\neval_every = 0\n"
    "\n[run]\nlog_every = 1\nbackend = cpu\n";

static pf_model *model;
static const pf_layout *layout;
static float *bufs[3], *sentinel;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *out = getenv("PF_FUZZ_WRITE_MODEL_INI");
    if (out && *out) {
        FILE *f = fopen(out, "w");
        int ok = f && fputs(MODEL_INI, f) >= 0;
        if (f && fclose(f) != 0) ok = 0;
        if (!ok) perror(out);
        exit(ok ? 0 : 1);
    }
    fuzz_quiet_hdf5();
    pf_config c;
    pf_config_defaults(&c);
    if (pf_config_load_string(&c, MODEL_INI, "MODEL_INI") != 0 ||
        !(model = pf_model_create(&c, &pf_backend_cpu, 1))) {
        fprintf(stderr, "fuzz_checkpoint: cannot build the model: %s\n", pf_errmsg());
        exit(1);
    }
    layout = pf_model_layout(model);
    for (int i = 0; i < 3; i++) bufs[i] = malloc(sizeof(float) * (size_t)layout->numel);
    sentinel = malloc(sizeof(float) * (size_t)layout->numel);
    for (int64_t i = 0; i < layout->numel; i++) sentinel[i] = -1234.5f;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *path = strdup(fuzz_write_fresh("checkpoints/ckpt-00000002.h5", data, size));

    char *text = NULL;
    if (pf_checkpoint_read_config(path, &text) == 0) {
        FUZZ_CHECK(text != NULL);
        pf_config probe;
        pf_config_defaults(&probe);
        (void)pf_config_load_string(&probe, text, path);
        free(text);
    }
    (void)pf_errmsg();

    size_t bytes = sizeof(float) * (size_t)layout->numel;
    for (int i = 0; i < 3; i++) memcpy(bufs[i], sentinel, bytes);
    pf_checkpoint_state st;
    memset(&st, 0x5a, sizeof st);
    pf_checkpoint_state before = st;
    int rc = pf_checkpoint_load(path, layout, bufs[0], bufs[1], bufs[2], &st);
    (void)pf_errmsg();
    if (rc == 0) {
        FUZZ_CHECK(st.world >= 1 && st.rng_words >= 1 && st.rng && st.cursors && st.config_text);
        (void)strlen(st.config_text);
        for (int i = 0; i < st.n_masks; i++)
            FUZZ_CHECK(st.masks[i].rows >= 1 && st.masks[i].cols >= 1 &&
                       st.masks[i].rows * st.masks[i].cols <= PF_PATTERN_MAX_BLOCKS);
        (void)pf_model_adopt_masks(model, &st, path);
        (void)pf_errmsg();
        pf_checkpoint_state_free(&st);
    } else {
        FUZZ_CHECK(memcmp(&st, &before, sizeof st) == 0);
        for (int i = 0; i < 3; i++) FUZZ_CHECK(memcmp(bufs[i], sentinel, bytes) == 0);
    }
    free(path);
    fuzz_check_hdf5_closed();
    return 0;
}
