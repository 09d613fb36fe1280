#include "memplan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "data.h"

int pf_mem_plan_compute(const pf_config *c, const pf_backend *be, pf_mem_plan *p) {
    memset(p, 0, sizeof *p);
    pf_model_memory one;
    if (pf_model_plan(c, be, c->batch_size, &p->model) < 0 || pf_model_plan(c, be, 1, &one) < 0)
        return -1;
    const pf_model_memory *m = &p->model;
    p->act_per_sample = one.activations;
    // the training loader on every rank, the validation loader on rank 0
    p->loader = pf_data_plan_bytes(c, c->batch_size) * (c->val_path[0] ? 2 : 1);
    p->device = m->params + m->grads + m->optim + m->weights + m->activations;
    p->device_is_host = be->device == PF_DEV_CPU;
    // rank 0 stages parameters and both moments on the host to save or resume a checkpoint
    p->staging = m->params + m->optim;
    p->host = m->host + p->loader + p->staging + (p->device_is_host ? p->device : 0);
    return 0;
}

// The first number after `key` at the start of a line of `path` (e.g. "MemAvailable:"),
// times `scale`; -1 when there is none.
static double read_key(const char *path, const char *key, double scale) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    double v = -1;
    size_t n = strlen(key);
    while (v < 0 && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && (line[n] == ' ' || line[n] == '\t' || line[n] == ':'))
            v = strtod(line + n + 1 + strspn(line + n + 1, " \t:"), NULL) * scale;
    fclose(f);
    return v;
}

// A file holding one number ("max" or unreadable: -1).
static double read_number(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char buf[64] = "";
    char *ok = fgets(buf, sizeof buf, f);
    fclose(f);
    char *end;
    double v = ok ? strtod(buf, &end) : -1;
    return ok && end != buf ? v : -1;
}

// What the cgroup of this process still allows: limit - usage + reclaimable page cache;
// -1 without a limit.
static double cgroup_room(char *which, size_t len) {
    char dir[600] = "/sys/fs/cgroup", path[700];
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f) {  // cgroup v2: "0::/some/path"
        char line[480];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "0::", 3)) {
                line[strcspn(line, "\n")] = 0;
                snprintf(dir, sizeof dir, "/sys/fs/cgroup%s", strcmp(line + 3, "/") ? line + 3 : "");
            }
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/memory.max", dir);
    double limit = read_number(path);
    if (limit < 0 && strcmp(dir, "/sys/fs/cgroup")) {  // a namespace whose root is the cgroup
        snprintf(dir, sizeof dir, "/sys/fs/cgroup");
        snprintf(path, sizeof path, "%s/memory.max", dir);
        limit = read_number(path);
    }
    const char *usage = "memory.current", *stat_key = "inactive_file";
    if (limit < 0) {  // cgroup v1
        snprintf(dir, sizeof dir, "/sys/fs/cgroup/memory");
        snprintf(path, sizeof path, "%s/memory.limit_in_bytes", dir);
        limit = read_number(path);
        usage = "memory.usage_in_bytes", stat_key = "total_inactive_file";
        if (limit >= 9e18) limit = -1;  // v1's "no limit" is a page-rounded INT64_MAX
    }
    if (limit < 0) return -1;
    snprintf(which, len, "%s/memory.%s", dir, strcmp(usage, "memory.current") ? "limit_in_bytes"
                                                                               : "max");
    snprintf(path, sizeof path, "%s/%s", dir, usage);
    double used = read_number(path);
    snprintf(path, sizeof path, "%s/memory.stat", dir);
    double cache = read_key(path, stat_key, 1);
    if (used < 0) used = 0;
    if (cache > 0 && cache < used) used -= cache;
    return limit > used ? limit - used : 0;
}

double pf_host_mem_available(char *source, size_t len) {
    double avail = read_key("/proc/meminfo", "MemAvailable", 1024);
    snprintf(source, len, "MemAvailable in /proc/meminfo");
    if (avail < 0) {
        avail = (double)sysconf(_SC_AVPHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
        snprintf(source, len, "free pages (sysconf)");
    }
    char which[700];
    double room = cgroup_room(which, sizeof which);
    if (room >= 0 && room < avail) {
        avail = room;
        snprintf(source, len, "the limit of cgroup %s less its usage", which);
    }
    return avail;
}

// The model keys that set its memory, besides train.batch_size.
static const char *model_keys(const pf_config *c) {
    return c->model == PF_MODEL_GPT2
               ? "model.seq_len, model.n_embd, model.n_layer, model.vocab_size"
               : "model.image_size, model.patch_size, model.n_embd, model.n_layer";
}

int pf_mem_plan_fits(const pf_mem_plan *p, const pf_config *c, int local_ranks,
                     double host_avail, const char *host_source, double dev_avail) {
    if (local_ranks < 1) local_ranks = 1;
    const pf_model_memory *m = &p->model;
    bool dev_short = !p->device_is_host && p->device > dev_avail;
    double need = dev_short ? p->device : p->host * local_ranks;
    double avail = dev_short ? dev_avail : host_avail;
    if (need <= avail) return 0;
    // What one more sample costs where memory is short, and so the largest batch that fits.
    int B = m->B;
    double per = p->act_per_sample;
    if (!dev_short)
        per = (per * (p->device_is_host ? 1 : 0) + (m->host + p->loader) / B) * local_ranks;
    double host_buffers = m->host + p->loader + p->staging;
    double fixed = need - per * B;
    double fit = per > 0 ? floor((avail - fixed) / per) : 0;
    char ranks[96] = "", hint[512], weights[64] = "";
    if (m->weights > 0)
        snprintf(weights, sizeof weights, ", compute copy of the weights %.2f GB",
                 m->weights / 1e9);
    if (!dev_short && local_ranks > 1)
        snprintf(ranks, sizeof ranks, " for the %d ranks on this host", local_ranks);
    if (fit >= 1)
        snprintf(hint, sizeof hint, "train.batch_size = %.0f would fit (raise train.grad_accum to "
                 "keep the global batch); the sizes are set by train.batch_size, %s", fit,
                 model_keys(c));
    else
        snprintf(hint, sizeof hint, "even train.batch_size = 1 does not fit: make the model "
                 "smaller (%s, or sparser [pixelfly] layers)", model_keys(c));
    pf_error("the run needs %.2f GB of %s memory%s but %.2f GB is available (%s): parameters "
             "%.2f GB, gradients %.2f GB, AdamW state %.2f GB%s, activations %.2f GB at "
             "train.batch_size %d (%.3f GB per sample), host buffers %.2f GB (batches, checkpoint "
             "staging); %s",
             need / 1e9, dev_short ? "device" : "host", ranks, avail / 1e9,
             dev_short ? "free on the device" : host_source, m->params / 1e9, m->grads / 1e9,
             m->optim / 1e9, weights,
             m->activations / 1e9, B, p->act_per_sample / 1e9, host_buffers / 1e9, hint);
    return -1;
}

int pf_mem_plan_check(const pf_mem_plan *p, const pf_config *c, const pf_backend *be,
                      int local_ranks) {
    char source[800];
    double host = pf_host_mem_available(source, sizeof source), dev = 0;
    if (!p->device_is_host) {
        pf_device_info d;
        be->device_info(&d);
        dev = d.mem_total - d.mem_used;
    }
    return pf_mem_plan_fits(p, c, local_ranks, host, source, dev);
}

void pf_mem_plan_print(const pf_mem_plan *p, const pf_config *c, const pf_backend *be,
                       FILE *f) {
    const pf_model_memory *m = &p->model;
    fprintf(f, "memory plan on %s at train.batch_size %d, per rank: parameters %.1f MB + "
               "gradients %.1f MB + AdamW m, v %.1f MB",
            be->name, m->B, m->params / 1e6, m->grads / 1e6, m->optim / 1e6);
    if (m->weights > 0) fprintf(f, " + compute weights %.1f MB", m->weights / 1e6);
    fprintf(f, " + activations %.1f MB (%.2f MB per sample) = %.1f MB on the %s; host "
               "buffers %.1f MB (model %.1f, loaders %.1f, checkpoint staging %.1f)\n",
            m->activations / 1e6, p->act_per_sample / 1e6, p->device / 1e6,
            p->device_is_host ? "host" : "device", (m->host + p->loader + p->staging) / 1e6,
            m->host / 1e6, p->loader / 1e6, p->staging / 1e6);
    if (pf_mem_plan_check(p, c, be, 1) == 0) {
        char source[800];
        double host = pf_host_mem_available(source, sizeof source);
        fprintf(f, "  fits: %.1f GB of host memory available (%s)\n", host / 1e9, source);
    } else {
        fprintf(f, "  does not fit: %s\n", pf_errmsg());
    }
}
