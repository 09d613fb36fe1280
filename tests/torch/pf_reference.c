// pf_reference: pixelfly's side of the PyTorch reference test (tests/torch/run.sh).
//
//   pf_reference shards DIR
//       writes the test's tiny training shards: DIR/tokens.h5 (vocabulary 97, end-of-text 96,
//       4097 random tokens), DIR/images.h5 (64 random 16x16 RGB images, 10 classes) and
//       DIR/images28.h5 (256 random 28x28 gray images, 10 classes: the quickstart Mixer's shape)
//   pf_reference run CHECKPOINT B BATCH.bin OUT.safetensors
//       loads the checkpoint, runs one forward and backward pass (CPU, fp32) on the batch of B
//       rows in BATCH.bin and writes "loss" [1], "logits" ([B, T, V] for GPT-2, the V real
//       columns; [B, K] for vision) and "grad.NAME" (d mean loss / d parameter NAME, the
//       parameter's shape) for every parameter, as fp32 safetensors.
//       BATCH.bin, little-endian: GPT-2 int32 tokens [B, T] then int32 targets [B, T];
//       vision float32 images [B, S, S, C] (normalised, row-major HWC) then int32 labels [B].
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "checkpoint.h"
#include "common.h"
#include "config.h"
#include "image_shard.h"
#include "models/model.h"
#include "rng.h"
#include "safetensors.h"
#include "text_shard.h"

// The logits the model hands to the loss, captured from the loss op (the model keeps them in
// a buffer of its own; GPT-2 pads them to a multiple of 64 columns).
static float *cap_logits;
static int64_t cap_rows, cap_cols;

static void capture_xent_fwd(pf_tensor losses, pf_tensor logits, pf_tensor targets, int V,
                             int ignore_index, float smoothing) {
    PF_ASSERT(logits.dtype == PF_F32 && logits.ndim == 2);
    cap_rows = logits.shape[0];
    cap_cols = V;
    free(cap_logits);
    cap_logits = pf_malloc(sizeof(float) * (size_t)(cap_rows * V));
    for (int64_t r = 0; r < cap_rows; r++)
        memcpy(cap_logits + r * V, (const float *)logits.data + r * logits.shape[1],
               sizeof(float) * V);
    pf_backend_cpu.xent_fwd(losses, logits, targets, V, ignore_index, smoothing);
}

// DIR/NAME: n random S x S x C images, labels n mod 10.
static int image_shard(const char *dir, const char *name, int S, int C, int n, pf_rng *r) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    pf_shard_writer *iw = pf_shard_writer_open(path, S, S, C);
    if (!iw) return -1;
    uint8_t *img = pf_malloc((size_t)S * S * C);
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; k < (size_t)S * S * C; k++) img[k] = (uint8_t)pf_rng_below(r, 256);
        if (pf_shard_writer_add(iw, img, i % 10) < 0) {
            free(img);
            return -1;
        }
    }
    free(img);
    char *names[10], buf[10][8];
    for (int k = 0; k < 10; k++) snprintf(buf[k], sizeof buf[k], "c%d", k), names[k] = buf[k];
    return pf_shard_writer_finish(iw, 10, names, "pf_reference");
}

static int shards(const char *dir) {
    char path[1024];
    pf_rng r;
    pf_rng_seed(&r, 5);
    snprintf(path, sizeof path, "%s/tokens.h5", dir);
    pf_text_shard_writer *tw = pf_text_shard_create(path, 97, 96, "test", "pf_reference", 4097);
    if (!tw) return -1;
    for (int i = 0; i < 4097; i++) {
        int32_t id = (int32_t)pf_rng_below(&r, 97);
        if (pf_text_shard_append(tw, &id, 1) < 0) return -1;
    }
    if (pf_text_shard_commit(tw) < 0) return -1;
    return image_shard(dir, "images.h5", 16, 3, 64, &r) ||
           image_shard(dir, "images28.h5", 28, 1, 256, &r);
}

static int run(const char *ckpt, int B, const char *batch_path, const char *out) {
    char *text = NULL, *bytes = NULL;
    size_t len;
    pf_config cfg;
    pf_config_defaults(&cfg);
    if (pf_checkpoint_read_config(ckpt, &text) < 0 || pf_config_load_string(&cfg, text, ckpt) < 0)
        return -1;
    free(text);
    static pf_backend be;
    be = pf_backend_cpu;
    be.xent_fwd = capture_xent_fwd;
    pf_model *m = pf_model_create(&cfg, &be, B);
    if (!m) return -1;
    const pf_layout *lay = pf_model_layout(m);
    pf_arena *a = pf_model_arena(m);
    float *host = pf_calloc(lay->numel, sizeof(float));
    pf_checkpoint_state st = {0};
    if (pf_checkpoint_load(ckpt, lay, host, NULL, NULL, &st) < 0 ||
        pf_model_adopt_masks(m, &st, ckpt) < 0)
        return -1;
    be.upload(a->params, host, sizeof(float) * lay->numel);
    if (pf_read_file(batch_path, &bytes, &len) < 0) return -1;
    pf_batch batch = {0};
    bool gpt2 = cfg.model == PF_MODEL_GPT2;
    int64_t n_in = gpt2 ? (int64_t)B * cfg.seq_len
                        : (int64_t)B * cfg.image_size * cfg.image_size * cfg.channels;
    int64_t n_lab = gpt2 ? n_in : B;
    if (len != (size_t)(4 * (n_in + n_lab))) {
        pf_error("%s: %zu bytes, expected %lld for B = %d", batch_path, len,
                 (long long)(4 * (n_in + n_lab)), B);
        return -1;
    }
    if (gpt2) batch.tokens = (const int32_t *)bytes, batch.targets = (const int32_t *)bytes + n_in;
    else batch.images = (const float *)bytes, batch.labels = (const int32_t *)bytes + n_in;
    be.zero(a->grads, sizeof(float) * lay->numel);
    float loss = pf_model_forward(m, &batch, NULL);
    pf_model_backward(m, 1.0f, NULL, NULL);
    float *grads = pf_malloc(sizeof(float) * lay->numel);
    be.download(grads, a->grads, sizeof(float) * lay->numel);
    pf_st_writer *w = pf_st_writer_new();
    pf_st_add(w, "loss", PF_ST_F32, 1, (int64_t[]){1}, &loss, false);
    if (gpt2)
        pf_st_add(w, "logits", PF_ST_F32, 3, (int64_t[]){B, cfg.seq_len, cap_cols}, cap_logits,
                  false);
    else
        pf_st_add(w, "logits", PF_ST_F32, 2, (int64_t[]){B, cap_cols}, cap_logits, false);
    for (int i = 0; i < lay->count; i++) {
        const pf_param_info *p = &lay->params[i];
        char name[PF_PARAM_NAME_MAX + 8];
        snprintf(name, sizeof name, "grad.%s", p->name);
        pf_st_add(w, name, PF_ST_F32, p->ndim, p->shape, grads + p->offset, false);
    }
    int rc = pf_st_write(w, out);
    pf_st_writer_free(w);
    free(grads);
    free(bytes);
    free(host);
    pf_checkpoint_state_free(&st);
    pf_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    int rc;
    if (argc == 3 && !strcmp(argv[1], "shards")) {
        rc = shards(argv[2]);
    } else if (argc == 6 && !strcmp(argv[1], "run")) {
        int B = atoi(argv[3]);
        if (B < 1) {
            fprintf(stderr, "pf_reference: B '%s' must be a positive integer\n", argv[3]);
            return PF_EXIT_USAGE;
        }
        rc = run(argv[2], B, argv[4], argv[5]);
    } else {
        fprintf(stderr, "usage: pf_reference shards DIR\n"
                        "       pf_reference run CHECKPOINT B BATCH.bin OUT.safetensors\n");
        return PF_EXIT_USAGE;
    }
    if (rc < 0) {
        fprintf(stderr, "pf_reference: %s\n", pf_errmsg());
        return PF_EXIT_FAILURE;
    }
    return PF_EXIT_OK;
}
