#include "config.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

typedef enum { T_INT, T_INT64, T_FLOAT, T_BOOL, T_PATH, T_ENUM, T_LAYER } key_type;

typedef struct {
    const char *section, *key;
    key_type type;
    size_t offset;
    const char *def;      // default, as it would be written in the file
    const char *choices;  // T_ENUM: "a|b|c", index = enum value
    const char *help;
    double max;           // T_INT, T_INT64, T_FLOAT: the largest accepted value; 0: no bound
} key_def;

#define K(sec, name, ty, field, def, choices, help) \
    {sec, name, ty, offsetof(pf_config, field), def, choices, help, 0}
// A key with an upper bound (`pftrain keys` lists it): sizes that buffers are allocated
// from, bounded so that every product of them the models form stays within 64-bit sizes.
#define KMAX(sec, name, ty, field, def, help, max) \
    {sec, name, ty, offsetof(pf_config, field), def, 0, help, max}

// The layer spec forms (docs/ARCHITECTURE.md, "Layer kinds"), for `pftrain keys` and errors.
#define SPEC_FORMS                                                                          \
    "dense, auto, 'bs=B nf=F [rank=R]' (pixelfly), 'blocksparse bs=B blocks=K [rank=R] "   \
    "[seed=S]', 'butterfly bs=B' or 'lowrank rank=R'"
#define LAYER(key, help) K("pixelfly", #key, T_LAYER, key, "auto", 0, help ": " SPEC_FORMS)

static const key_def SCHEMA[] = {
    K("model", "type", T_ENUM, model, "gpt2", "gpt2|vit|mixer", "model family"),
    KMAX("model", "n_layer", T_INT, n_layer, "4", "number of blocks", 1024),
    KMAX("model", "n_embd", T_INT, n_embd, "128", "width", 65536),
    KMAX("model", "n_head", T_INT, n_head, "4", "attention heads", 1024),
    KMAX("model", "seq_len", T_INT, seq_len, "128", "gpt2: context length", 1048576),
    KMAX("model", "vocab_size", T_INT, vocab_size, "50257", "gpt2: vocabulary (padded to 64)",
         4194304),
    KMAX("model", "mlp_ratio", T_FLOAT, mlp_ratio, "4", "MLP hidden = n_embd * mlp_ratio", 64),
    KMAX("model", "image_size", T_INT, image_size, "28", "vision: input side", 16384),
    KMAX("model", "patch_size", T_INT, patch_size, "4", "vision: patch side", 16384),
    KMAX("model", "channels", T_INT, channels, "1", "vision: image channels", 4),
    KMAX("model", "num_classes", T_INT, num_classes, "10", "vision: classes", 1048576),
    KMAX("model", "token_mlp_dim", T_INT, token_mlp_dim, "64", "mixer: token-mixing hidden",
         1048576),
    KMAX("model", "channel_mlp_dim", T_INT, channel_mlp_dim, "256", "mixer: channel hidden",
         1048576),
    K("model", "init_std", T_FLOAT, init_std, "0.02", 0, "std of dense linear weights"),
    LAYER(attn_qkv, "attention q/k/v projection"),
    LAYER(attn_proj, "attention output projection"),
    LAYER(mlp_fc1, "MLP (channel MLP) first layer"),
    LAYER(mlp_fc2, "MLP (channel MLP) second layer"),
    LAYER(token_fc1, "mixer token MLP first layer"),
    LAYER(token_fc2, "mixer token MLP second layer"),
    K("pixelfly", "budget", T_FLOAT, budget, "0", 0,
      "fraction of the dense parameters and FLOPs kept by every layer left 'auto' (Pixelfly "
      "pattern chosen per layer, docs/ARCHITECTURE.md); 0: auto layers are dense"),
    K("pixelfly", "recompute_mlp", T_BOOL, recompute_mlp, "false", 0,
      "recompute the MLP hidden activations in backward, saving 2 x N x hidden activations per "
      "block for one more fc1 forward and GELU per step; needs mlp_fc1 and mlp_fc2 Pixelfly "
      "or blocksparse (formerly fuse_mlp)"),
    K("data", "train", T_PATH, train_path, "", 0,
      "training shards: a .h5 path, or a comma-separated list of paths and globs "
      "(data/imagenet-train-*.h5)"),
    K("data", "val", T_PATH, val_path, "", 0, "validation shards, as data.train"),
    KMAX("data", "workers", T_INT, data_workers, "1",
         "loader threads building batches ahead of the step; 0: built in the step", 256),
    KMAX("data", "prefetch", T_INT, data_prefetch, "2",
         "batches the loader threads build ahead (a bounded queue; needs >= 1 with workers)",
         64),
    KMAX("train", "batch_size", T_INT, batch_size, "8", "micro-batch per rank", 65536),
    KMAX("train", "grad_accum", T_INT, grad_accum, "1", "micro-batches per step", 65536),
    K("train", "steps", T_INT64, steps, "100", 0, "optimizer steps"),
    K("train", "lr", T_FLOAT, lr, "6e-4", 0, "peak learning rate"),
    K("train", "min_lr_frac", T_FLOAT, min_lr_frac, "0.1", 0, "final lr as a fraction of lr"),
    K("train", "warmup_steps", T_INT, warmup_steps, "10", 0, "linear warmup steps"),
    K("train", "schedule", T_ENUM, schedule, "cosine", "cosine|linear|constant", "decay"),
    K("train", "weight_decay", T_FLOAT, weight_decay, "0.1", 0, "AdamW decoupled decay"),
    K("train", "beta1", T_FLOAT, beta1, "0.9", 0, "AdamW beta1"),
    K("train", "beta2", T_FLOAT, beta2, "0.95", 0, "AdamW beta2"),
    K("train", "eps", T_FLOAT, eps, "1e-8", 0, "AdamW epsilon"),
    K("train", "grad_clip", T_FLOAT, grad_clip, "1.0", 0, "global norm clip (0: off)"),
    K("train", "label_smoothing", T_FLOAT, label_smoothing, "0", 0, "vision: label smoothing"),
    K("train", "dropout", T_FLOAT, dropout, "0", 0,
      "dropout probability on the embedding output and every residual branch, in training"),
    K("train", "seed", T_INT64, seed, "1337", 0, "seed for init and data order"),
    K("train", "eval_every", T_INT, eval_every, "50", 0, "steps between evaluations"),
    K("train", "eval_batches", T_INT, eval_batches, "20", 0, "batches per evaluation (0: all)"),
    K("train", "augment_scale_min", T_FLOAT, augment_scale_min, "1", 0,
      "vision: random-resized-crop min area (1: off)"),
    K("train", "hflip", T_BOOL, hflip, "false", 0, "vision: random horizontal flip"),
    K("train", "mixup_alpha", T_FLOAT, mixup_alpha, "0", 0, "vision: mixup Beta alpha (0: off)"),
    K("train", "cutmix_alpha", T_FLOAT, cutmix_alpha, "0", 0, "vision: cutmix Beta alpha (0: off)"),
    K("run", "out_dir", T_PATH, out_dir, "runs/default", 0, "metrics, config, checkpoints"),
    K("run", "log_every", T_INT, log_every, "1", 0, "steps between metric lines"),
    K("run", "backend", T_ENUM, backend, "auto", "auto|cpu|cuda", "where to compute"),
    K("run", "checkpoint_every", T_INT, checkpoint_every, "0", 0, "steps between saves (0: end)"),
    K("run", "keep_checkpoints", T_INT, keep_checkpoints, "3", 0, "checkpoints kept"),
    KMAX("run", "bucket_bytes", T_INT64, bucket_bytes, "26214400", "all-reduce bucket size",
         1099511627776),
    K("run", "peak_tflops", T_FLOAT, peak_tflops, "0", 0,
      "device peak TFLOP/s for MFU (0: the bf16 peak of a known GPU, none on CPU)"),
};
#define NKEYS (int)(sizeof SCHEMA / sizeof SCHEMA[0])

// Former names of keys, still accepted: each use prints one line naming the new key.
static const struct {
    const char *section, *old_key, *new_key;
} ALIASES[] = {
    // The option never fused kernels: it recomputes the MLP's hidden activations in backward.
    {"pixelfly", "fuse_mlp", "recompute_mlp"},
};

static const key_def *find_key(const char *section, const char *key) {
    for (int i = 0; i < NKEYS; i++)
        if (!strcmp(SCHEMA[i].section, section) && !strcmp(SCHEMA[i].key, key)) return &SCHEMA[i];
    for (size_t a = 0; a < sizeof ALIASES / sizeof ALIASES[0]; a++)
        if (!strcmp(ALIASES[a].section, section) && !strcmp(ALIASES[a].old_key, key)) {
            pf_report("note: %s.%s is now called %s.%s; the old name still works", section, key,
                      section, ALIASES[a].new_key);
            return find_key(section, ALIASES[a].new_key);
        }
    return NULL;
}

// " (did you mean 'train.lr'?)" for the nearest known key within edit distance 2.
static void suggest(const char *section, const char *key, char *buf, size_t len) {
    int best = 3;
    const key_def *hit = NULL;
    for (int i = 0; i < NKEYS; i++) {
        int d = pf_edit_distance(SCHEMA[i].key, key) + (strcmp(SCHEMA[i].section, section) != 0);
        if (d < best) best = d, hit = &SCHEMA[i];
    }
    if (hit) snprintf(buf, len, " (did you mean '%s.%s'?)", hit->section, hit->key);
    else buf[0] = 0;
}

static bool known_section(const char *section) {
    for (int i = 0; i < NKEYS; i++)
        if (!strcmp(SCHEMA[i].section, section)) return true;
    return false;
}

static int parse_enum(const char *choices, const char *v) {
    int idx = 0;
    size_t n = strlen(v);
    for (const char *p = choices;; idx++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n)) return idx;
        if (!bar) return -1;
        p = bar + 1;
    }
}

static const char *enum_name(const char *choices, int idx, char *buf, size_t len) {
    const char *p = choices;
    for (int i = 0; i < idx; i++) p = strchr(p, '|') + 1;
    const char *bar = strchr(p, '|');
    size_t n = bar ? (size_t)(bar - p) : strlen(p);
    snprintf(buf, len, "%.*s", (int)n, p);
    return buf;
}

static const char *const LAYER_KINDS[] = {
    [PF_LAYER_DENSE] = "dense",        [PF_LAYER_AUTO] = "auto",
    [PF_LAYER_PIXELFLY] = "pixelfly",  [PF_LAYER_BLOCKSPARSE] = "blocksparse",
    [PF_LAYER_BUTTERFLY] = "butterfly", [PF_LAYER_LOWRANK] = "lowrank",
};
#define N_LAYER_KINDS ((int)(sizeof LAYER_KINDS / sizeof *LAYER_KINDS))
_Static_assert(N_LAYER_KINDS == PF_LAYER_LOWRANK + 1, "a layer kind without a name");
const char *pf_layer_kind_name(pf_layer_kind k) {
    PF_ASSERT(k >= 0 && k < N_LAYER_KINDS);
    return LAYER_KINDS[k];
}

int pf_layer_spec_parse(pf_layer_spec *s, const char *text) {
    *s = (pf_layer_spec){.kind = PF_LAYER_PIXELFLY, .seed = 1};
    char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    // The fields each kind takes, as bits of FIELDS[]: the required ones and the optional.
    // Sized by the kind count: a kind takes no optional field where MAY says nothing.
    static const char *const FIELDS[] = {"bs", "nf", "rank", "blocks", "seed"};
    enum { F_BS = 1, F_NF = 2, F_RANK = 4, F_BLOCKS = 8, F_SEED = 16 };
    static const unsigned NEED[N_LAYER_KINDS] = {
        [PF_LAYER_PIXELFLY] = F_BS | F_NF, [PF_LAYER_BLOCKSPARSE] = F_BS | F_BLOCKS,
        [PF_LAYER_BUTTERFLY] = F_BS, [PF_LAYER_LOWRANK] = F_RANK};
    static const unsigned MAY[N_LAYER_KINDS] = {[PF_LAYER_PIXELFLY] = F_RANK,
                                                [PF_LAYER_BLOCKSPARSE] = F_RANK | F_SEED};
    unsigned have = 0;
    bool first = true;
    for (char *save = NULL, *tok = strtok_r(buf, " \t,", &save); tok;
         tok = strtok_r(NULL, " \t,", &save), first = false) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            int k = -1;
            for (int i = 0; i < N_LAYER_KINDS; i++)
                if (!strcmp(tok, LAYER_KINDS[i])) k = i;
            if (k < 0 || !first) {
                pf_error("'%s' in layer spec '%s': expected %s", tok, text, SPEC_FORMS);
                return -1;
            }
            s->kind = (pf_layer_kind)k;
            continue;
        }
        if (s->kind == PF_LAYER_DENSE || s->kind == PF_LAYER_AUTO) {
            pf_error("layer spec '%s': %s takes no fields", text, pf_layer_kind_name(s->kind));
            return -1;
        }
        char *end = NULL;
        long long v = strtoll(eq + 1, &end, 10);
        *eq = 0;
        int f = -1;
        for (int i = 0; i < 5; i++)
            if (!strcmp(tok, FIELDS[i])) f = i;
        unsigned bit = f < 0 ? 0 : 1u << f;
        if (!(bit & (NEED[s->kind] | MAY[s->kind]))) {
            pf_error("unknown field '%s' in layer spec '%s': %s; expected %s", tok, text,
                     pf_layer_kind_name(s->kind), SPEC_FORMS);
            return -1;
        }
        if (end == eq + 1 || *end) {
            pf_error("'%s=%s' in layer spec '%s': not an integer", tok, eq + 1, text);
            return -1;
        }
        long long most = bit == F_SEED ? INT64_MAX / 2 : 4194304;  // widths <= 2^22
        if (v < 0 || v > most) {
            pf_error("'%s=%lld' in layer spec '%s': use a value in [0, %lld]", tok, v, text, most);
            return -1;
        }
        if (have & bit) {
            pf_error("'%s' is given twice in layer spec '%s'", tok, text);
            return -1;
        }
        have |= bit;
        switch (bit) {
        case F_BS: s->bs = (int)v; break;
        case F_NF: s->nf = (int)v; break;
        case F_RANK: s->rank = (int)v; break;
        case F_BLOCKS: s->blocks = (int)v; break;
        default: s->seed = v; break;
        }
    }
    if (first) {
        pf_error("empty layer spec: expected %s", SPEC_FORMS);
        return -1;
    }
    unsigned need = s->kind == PF_LAYER_DENSE || s->kind == PF_LAYER_AUTO ? 0 : NEED[s->kind];
    for (int i = 0; i < 5; i++)
        if ((need & (1u << i)) && !(have & (1u << i))) {
            pf_error("layer spec '%s' needs %s= (%s)", text, FIELDS[i], SPEC_FORMS);
            return -1;
        }
    if (s->kind == PF_LAYER_LOWRANK && s->rank < 1) {
        pf_error("layer spec '%s': lowrank needs rank >= 1", text);
        return -1;
    }
    return 0;
}

pf_layer_kind pf_config_layer_kind(const pf_config *c, const pf_layer_spec *s) {
    if (s->kind != PF_LAYER_AUTO) return s->kind;
    return c->budget > 0 ? PF_LAYER_PIXELFLY : PF_LAYER_DENSE;
}

void pf_layer_spec_format(const pf_layer_spec *s, char *buf, size_t len) {
    switch (s->kind) {
    case PF_LAYER_PIXELFLY: snprintf(buf, len, "bs=%d nf=%d rank=%d", s->bs, s->nf, s->rank); break;
    case PF_LAYER_BLOCKSPARSE:
        snprintf(buf, len, "blocksparse bs=%d blocks=%d rank=%d seed=%lld", s->bs, s->blocks,
                 s->rank, (long long)s->seed);
        break;
    case PF_LAYER_BUTTERFLY: snprintf(buf, len, "butterfly bs=%d", s->bs); break;
    case PF_LAYER_LOWRANK: snprintf(buf, len, "lowrank rank=%d", s->rank); break;
    default: snprintf(buf, len, "%s", pf_layer_kind_name(s->kind)); break;
    }
}

// A free-text value (a path) must come back unchanged from the `key = value` line that
// pf_config_write makes of it (config.ini, a checkpoint's /config), read by libinih: that
// strips leading and trailing whitespace, takes ';' after whitespace as the start of a
// comment, and splits lines longer than PF_CONFIG_LINE_MAX. Values it would change are
// refused here, whether they come from a file or --set (docs/FORMATS.md).
static int check_line_value(const key_def *k, const char *v) {
    size_t n = strlen(v), room = PF_CONFIG_LINE_MAX - strlen(k->key) - 3;
    const char *why = NULL;
    for (size_t i = 0; i < n && !why; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) why = "contains a control character";
    if (!why && n && (v[0] == ' ' || v[n - 1] == ' ')) why = "begins or ends with a space";
    if (!why && (v[0] == ';' || strstr(v, " ;")))
        why = "has ';' at its start or after a space, which a config file reads as a comment";
    if (why) {
        pf_error("%s.%s = '%s' %s: it would not read back the same from config.ini; remove "
                 "it (rename the file if it is part of its name)",
                 k->section, k->key, v, why);
        return -1;
    }
    if (n > room) {
        pf_error("%s.%s: the value is %zu bytes; a config line holds at most %d bytes, so at "
                 "most %zu fit after '%s = ' (use a shorter or relative path, or a symlink)",
                 k->section, k->key, n, PF_CONFIG_LINE_MAX, room, k->key);
        return -1;
    }
    return 0;
}

static int set_value(pf_config *c, const key_def *k, const char *v) {
    void *dst = (char *)c + k->offset;
    char *end = NULL;
    errno = 0;
    switch (k->type) {
    case T_INT:
    case T_INT64: {
        long long x = strtoll(v, &end, 10);
        if (end == v || *end || errno || x < 0 || (k->type == T_INT && x > 2147483647)) {
            pf_error("%s.%s = '%s' is not a non-negative integer%s", k->section, k->key, v,
                     k->type == T_INT ? " (at most 2147483647)" : "");
            return -1;
        }
        if (k->max > 0 && (double)x > k->max) {
            pf_error("%s.%s = %s is above its limit %.0f (see `pftrain keys`); use a value "
                     "in [0, %.0f]", k->section, k->key, v, k->max, k->max);
            return -1;
        }
        if (k->type == T_INT) *(int *)dst = (int)x;
        else *(int64_t *)dst = x;
        return 0;
    }
    case T_FLOAT: {
        float x = strtof(v, &end);
        if (end == v || *end || errno || !isfinite(x)) {
            pf_error("%s.%s = '%s' is not a number", k->section, k->key, v);
            return -1;
        }
        if (k->max > 0 && x > k->max) {
            pf_error("%s.%s = %s is above its limit %g (see `pftrain keys`)", k->section,
                     k->key, v, k->max);
            return -1;
        }
        *(float *)dst = x;
        return 0;
    }
    case T_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1")) *(bool *)dst = true;
        else if (!strcmp(v, "false") || !strcmp(v, "0")) *(bool *)dst = false;
        else {
            pf_error("%s.%s = '%s': use true or false", k->section, k->key, v);
            return -1;
        }
        return 0;
    case T_PATH:
        if (check_line_value(k, v) < 0) return -1;
        strcpy((char *)dst, v);
        return 0;
    case T_ENUM: {
        int idx = parse_enum(k->choices, v);
        if (idx < 0) {
            pf_error("%s.%s = '%s': use one of %s", k->section, k->key, v, k->choices);
            return -1;
        }
        *(int *)dst = idx;
        return 0;
    }
    case T_LAYER:
        if (pf_layer_spec_parse((pf_layer_spec *)dst, v) < 0) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s.%s: %s", k->section, k->key, pf_errmsg());
            pf_error("%s", msg);
            return -1;
        }
        return 0;
    }
    return -1;
}

void pf_config_defaults(pf_config *c) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < NKEYS; i++) PF_ASSERT(set_value(c, &SCHEMA[i], SCHEMA[i].def) == 0);
}

// The text of a config, line by line, for ini_parse_stream: counts lines (so that messages
// can name the line of an earlier key) and refuses a line libinih would split.
typedef struct {
    const char *p, *end;
    int line;
    const char *bad;  // why reading stopped early, NULL at the end of the text
} line_stream;

static char *read_line(char *str, int num, void *stream) {
    line_stream *s = stream;
    if (s->bad || s->p >= s->end) return NULL;
    const char *nl = memchr(s->p, '\n', (size_t)(s->end - s->p));
    size_t len = nl ? (size_t)(nl + 1 - s->p) : (size_t)(s->end - s->p);
    s->line++;
    size_t body = len - (nl != NULL);
    if (body && s->p[body - 1] == '\r') body--;
    if (memchr(s->p, 0, len)) s->bad = "contains a NUL byte (is this a text file?)";
    else if (body > PF_CONFIG_LINE_MAX || len + 1 > (size_t)num)
        s->bad = "is longer than the 197 bytes a config line may have; shorten the value "
                 "(a relative path or a symlink)";
    if (s->bad) return NULL;
    memcpy(str, s->p, len);
    str[len] = 0;
    s->p += len;
    return str;
}

typedef struct {
    pf_config *cfg;
    const char *path;
    int failed;
    char msg[1536];
    line_stream in;
    int seen[NKEYS];  // line of each key's value, 0: not given
} parse_state;

static int on_entry(void *user, const char *section, const char *key, const char *value) {
    parse_state *st = user;
    if (st->failed) return 0;
    const key_def *k = find_key(section, key);
    char hint[128];
    if (k && st->seen[k - SCHEMA]) {
        st->failed = 1;
        snprintf(st->msg, sizeof st->msg,
                 "%s.%s is given twice, on line %d and line %d; keep one of them (an indented "
                 "line continues the key above it)",
                 section, key, st->seen[k - SCHEMA], st->in.line);
        return 0;
    }
    if (k) st->seen[k - SCHEMA] = st->in.line;
    if (!k) {
        if (!known_section(section)) {
            st->failed = 1;
            snprintf(st->msg, sizeof st->msg,
                     "unknown section [%s]; sections are model, pixelfly, data, train, run",
                     section);
            return 0;
        }
        suggest(section, key, hint, sizeof hint);
        st->failed = 1;
        snprintf(st->msg, sizeof st->msg, "unknown key '%s' in [%s]%s", key, section, hint);
        return 0;
    }
    if (set_value(st->cfg, k, value) < 0) {
        st->failed = 1;
        snprintf(st->msg, sizeof st->msg, "%s", pf_errmsg());
        return 0;
    }
    return 1;
}

// Parses `len` bytes of config text over *c; messages start with "ORIGIN:LINE: ".
static int parse_text(pf_config *c, const char *text, size_t len, const char *origin) {
    parse_state *st = pf_calloc(1, sizeof *st);
    *st = (parse_state){.cfg = c, .path = origin, .in = {.p = text, .end = text + len}};
    int line = ini_parse_stream(read_line, &st->in, on_entry, st), rc = 0;
    if (line != 0 || st->in.bad) {
        if (st->failed) pf_error("%s:%d: %s", origin, line, st->msg);
        else if (line != 0) pf_error("%s:%d: syntax error (expected [section] or key = value)",
                                     origin, line);
        else pf_error("%s:%d: the line %s", origin, st->in.line, st->in.bad);
        rc = -1;
    }
    free(st);
    return rc;
}

int pf_config_load(pf_config *c, const char *path) {
    char *text;
    size_t len;
    FILE *f = fopen(path, "r");
    if (!f) {
        pf_error("cannot open config '%s': %s", path, strerror(errno));
        return -1;
    }
    fclose(f);
    if (pf_read_file(path, &text, &len) < 0) return -1;
    int rc = parse_text(c, text, len, path);
    free(text);
    return rc;
}

int pf_config_load_string(pf_config *c, const char *text, const char *origin) {
    return parse_text(c, text, strlen(text), origin);
}

int pf_config_set(pf_config *c, const char *assignment) {
    const char *dot = strchr(assignment, '.'), *eq = strchr(assignment, '=');
    if (!dot || !eq || dot > eq) {
        pf_error("--set '%s': expected section.key=value, e.g. train.lr=3e-4", assignment);
        return -1;
    }
    char section[64], key[64];
    snprintf(section, sizeof section, "%.*s", (int)(dot - assignment), assignment);
    snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
    const key_def *k = find_key(section, key);
    if (!k) {
        char hint[128];
        suggest(section, key, hint, sizeof hint);
        pf_error("--set: unknown key '%s.%s'%s", section, key, hint);
        return -1;
    }
    if (set_value(c, k, eq + 1) < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "--set: %s", pf_errmsg());
        pf_error("%s", msg);
        return -1;
    }
    return 0;
}

#define REQUIRE(cond, ...)         \
    do {                           \
        if (!(cond)) {             \
            pf_error(__VA_ARGS__); \
            return -1;             \
        }                          \
    } while (0)

int pf_config_validate(const pf_config *c) {
    REQUIRE(c->n_layer >= 1, "model.n_layer = %d: need at least 1", c->n_layer);
    REQUIRE(c->n_embd >= 1 && c->n_head >= 1, "model.n_embd and model.n_head must be >= 1");
    REQUIRE(c->mlp_ratio > 0, "model.mlp_ratio = %g must be positive", c->mlp_ratio);
    REQUIRE(c->batch_size >= 1, "train.batch_size must be >= 1");
    REQUIRE(c->data_workers == 0 || c->data_prefetch >= 1,
            "data.prefetch = 0 with data.workers = %d: the loader threads need room for at least "
            "one batch ahead; set data.prefetch >= 1, or data.workers = 0 to load in the step",
            c->data_workers);
    REQUIRE(c->grad_accum >= 1, "train.grad_accum must be >= 1");
    REQUIRE(c->steps >= 1, "train.steps must be >= 1");
    REQUIRE(c->lr > 0, "train.lr = %g must be positive", c->lr);
    REQUIRE(c->beta1 >= 0 && c->beta1 < 1 && c->beta2 >= 0 && c->beta2 < 1,
            "train.beta1 and train.beta2 must be in [0, 1)");
    REQUIRE(c->label_smoothing >= 0 && c->label_smoothing < 1,
            "train.label_smoothing = %g: use a value in [0, 1)", c->label_smoothing);
    REQUIRE(c->dropout >= 0 && c->dropout < 1, "train.dropout = %g: use a value in [0, 1)",
            c->dropout);
    REQUIRE(c->augment_scale_min > 0 && c->augment_scale_min <= 1,
            "train.augment_scale_min = %g: use a value in (0, 1]", c->augment_scale_min);
    REQUIRE(c->mixup_alpha >= 0, "train.mixup_alpha = %g: use a value >= 0 (0: off)",
            c->mixup_alpha);
    REQUIRE(c->cutmix_alpha >= 0, "train.cutmix_alpha = %g: use a value >= 0 (0: off)",
            c->cutmix_alpha);
    if (c->model == PF_MODEL_GPT2) {
        REQUIRE(c->mixup_alpha == 0, "train.mixup_alpha = %g: mixup is for vision models; set "
                "it to 0 for gpt2", c->mixup_alpha);
        REQUIRE(c->cutmix_alpha == 0, "train.cutmix_alpha = %g: cutmix is for vision models; "
                "set it to 0 for gpt2", c->cutmix_alpha);
    }
    REQUIRE(c->budget >= 0 && c->budget < 1,
            "pixelfly.budget = %g: use a fraction in (0, 1) of the dense parameters, or 0 (off)",
            c->budget);
    bool fc1 = pf_config_layer_masked(c, &c->mlp_fc1), fc2 = pf_config_layer_masked(c, &c->mlp_fc2);
    REQUIRE(!c->recompute_mlp || (fc1 && fc2),
            "pixelfly.recompute_mlp = true needs Pixelfly or blocksparse MLP layers, but %s "
            "not: give %s a pattern (e.g. 'bs=4 nf=2 rank=16') or set "
            "pixelfly.recompute_mlp = false",
            fc1 ? "pixelfly.mlp_fc2 is" : fc2 ? "pixelfly.mlp_fc1 is"
                                             : "pixelfly.mlp_fc1 and mlp_fc2 are",
            fc1 != fc2 ? "it" : "both");
    REQUIRE(c->log_every >= 1, "run.log_every must be >= 1");
    REQUIRE(c->train_path[0], "data.train is not set: give the training shard (.h5) made "
                              "by pfdata, e.g. --set data.train=data/train.h5");
    if (c->model == PF_MODEL_GPT2 || c->model == PF_MODEL_VIT)
        REQUIRE(c->n_embd % c->n_head == 0, "model.n_embd = %d is not divisible by n_head = %d",
                c->n_embd, c->n_head);
    if (c->model == PF_MODEL_GPT2) {
        REQUIRE(c->seq_len >= 1, "model.seq_len must be >= 1");
        REQUIRE(c->vocab_size >= 2, "model.vocab_size must be >= 2");
    } else {
        REQUIRE(c->patch_size >= 1 && c->image_size % c->patch_size == 0,
                "model.image_size = %d is not divisible by patch_size = %d", c->image_size,
                c->patch_size);
        REQUIRE(c->num_classes >= 2, "model.num_classes must be >= 2");
        REQUIRE(c->channels >= 1, "model.channels must be >= 1");
    }
    return 0;
}

void pf_config_write(const pf_config *c, FILE *f) {
    const char *section = "";
    char buf[PF_PATH_MAX + 64];
    for (int i = 0; i < NKEYS; i++) {
        const key_def *k = &SCHEMA[i];
        const void *src = (const char *)c + k->offset;
        if (strcmp(section, k->section)) {
            fprintf(f, "%s[%s]\n", i ? "\n" : "", k->section);
            section = k->section;
        }
        switch (k->type) {
        case T_INT: snprintf(buf, sizeof buf, "%d", *(const int *)src); break;
        case T_INT64: snprintf(buf, sizeof buf, "%lld", (long long)*(const int64_t *)src); break;
        case T_FLOAT: snprintf(buf, sizeof buf, "%.9g", *(const float *)src); break;
        case T_BOOL: snprintf(buf, sizeof buf, "%s", *(const bool *)src ? "true" : "false"); break;
        case T_PATH: snprintf(buf, sizeof buf, "%s", (const char *)src); break;
        case T_ENUM: enum_name(k->choices, *(const int *)src, buf, sizeof buf); break;
        case T_LAYER: pf_layer_spec_format(src, buf, sizeof buf); break;
        }
        fprintf(f, "%s = %s\n", k->key, buf);
    }
}

void pf_config_print_keys(FILE *f) {
    fprintf(f, "%-26s %-22s %s\n", "section.key", "default", "meaning");
    for (int i = 0; i < NKEYS; i++) {
        const key_def *k = &SCHEMA[i];
        char name[64];
        snprintf(name, sizeof name, "%s.%s", k->section, k->key);
        char max[48] = "";
        if (k->max > 0) snprintf(max, sizeof max, " (at most %.10g)", k->max);
        fprintf(f, "%-26s %-22s %s%s%s%s\n", name, k->def[0] ? k->def : "(none)", k->help,
                k->choices ? ": " : "", k->choices ? k->choices : "", max);
    }
}

char *pf_config_to_string(const pf_config *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    PF_ASSERT(f);
    pf_config_write(c, f);
    fclose(f);
    return text;
}
