// images_cmd.c: `pfdata images`, options and the helpers its converters share
// (class-name lists, the source attribute, finishing a shard, the progress bar).
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "image_convert.h"
#include "interrupt.h"
#include "pfdata.h"

// ---- shared helpers --------------------------------------------------------------------

int pf_read_name_list(const char *path, char ***names, int *n) {
    char *text;
    if (pf_read_file(path, &text, NULL) < 0) return -1;
    int cap = 16, count = 0;
    char **v = pf_malloc(sizeof *v * (size_t)cap);
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
            line[--len] = 0;
        if (!len) continue;
        if (count == cap) v = pf_realloc(v, sizeof *v * (size_t)(cap *= 2));
        v[count++] = pf_strdup(line);
    }
    free(text);
    if (count == 0) {
        free(v);
        pf_error("'%s' lists no names (expected one class name per line)", path);
        return -1;
    }
    *names = v, *n = count;
    return 0;
}

char **pf_numbered_names(int n) {
    char **v = pf_malloc(sizeof *v * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", i);
        v[i] = pf_strdup(buf);
    }
    return v;
}

void pf_free_names(char **names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

char *pf_source_string(const char *format, int n_in, char **in) {
    size_t len = strlen(format) + 2;
    for (int i = 0; i < n_in; i++) len += strlen(in[i]) + 1;
    char *s = pf_malloc(len + 1);
    size_t used = (size_t)sprintf(s, "%s:", format);
    for (int i = 0; i < n_in; i++) used += (size_t)sprintf(s + used, " %s", in[i]);
    return s;
}

int pf_convert_finish(pf_shard_writer *w, const pf_convert_opts *o, char *const *names,
                      int num_classes, const char *source, pf_convert_result *r) {
    char **given = NULL;
    int n_given = 0;
    if (o->class_names && pf_read_name_list(o->class_names, &given, &n_given) < 0) {
        pf_shard_writer_abort(w);
        return -1;
    }
    r->images = pf_shard_writer_count(w);
    r->num_classes = given ? n_given : num_classes;
    int rc = pf_shard_writer_finish(w, r->num_classes, given ? given : names, source);
    if (rc < 0 && given) {
        char keep[2048];
        snprintf(keep, sizeof keep, "%s (with %d names from --class-names '%s')", pf_errmsg(),
                 n_given, o->class_names);
        pf_error("%s", keep);
    }
    pf_free_names(given, n_given);
    return rc;
}

void pf_progress_begin(pf_progress *p, bool on, int64_t total) {
    *p = (pf_progress){.on = on, .total = total, .t0 = pf_now()};
}

// "ETA 4:37" or "ETA 1:02:03" for s seconds left.
static void format_eta(double s, char *buf, size_t cap) {
    long t = s < 0 ? 0 : s > 3.6e8 ? 360000000L : (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "ETA %ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "ETA %ld:%02ld", t / 60, t % 60);
}

void pf_progress_step(pf_progress *p, int64_t done) {
    if (!p->on) return;
    double now = pf_now();
    if (now - p->last < 0.1 && done != p->total) return;
    p->last = now;
    double rate = done / (now - p->t0 + 1e-9);
    if (p->total > 0) {
        char bar[31], eta[32] = "";
        int fill = (int)(30 * done / p->total);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        if (done > 0) format_eta((double)(p->total - done) / rate, eta, sizeof eta);
        fprintf(stderr, "\r[%s] %lld/%lld %3d%% %.0f images/s %s ", bar, (long long)done,
                (long long)p->total, (int)(100 * done / p->total), rate, eta);
    } else {
        fprintf(stderr, "\r%lld images %.0f images/s ", (long long)done, rate);
    }
    fflush(stderr);
}

void pf_progress_end(pf_progress *p) {
    if (p->on) fprintf(stderr, "\r\033[K");
}

// ---- the command -----------------------------------------------------------------------

enum { F_IDX = 1, F_CIFAR = 2, F_IMAGENET = 4, F_ALL = 7 };

static const struct {
    const char *name;
    int formats;  // which formats accept it
    bool takes_value;
    const char *help;
} options[] = {
    {"--format", F_ALL, true, "idx | cifar | imagenet (required)"},
    {"--out", F_ALL, true, "output shard OUT.h5 (must not exist), or the STEM of --shard-images (required)"},
    {"--class-names", F_ALL, true, "FILE with one class name per line (overrides defaults)"},
    {"--classes", F_IDX, true, "fashion-mnist: Fashion-MNIST's names (default \"0\"..\"9\")"},
    {"--cifar100", F_CIFAR, false, "CIFAR-100 records (coarse + fine label; fine is used)"},
    {"--labels", F_IMAGENET, true, "FILE of labels for a flat folder of JPEGs"},
    {"--synsets", F_IMAGENET, true, "FILE of class lines \"wnid [description]\""},
    {"--size", F_IMAGENET, true, "S: short side resized to S, center crop S x S (default 256)"},
    {"--on-corrupt", F_IMAGENET, true, "stop (default) | skip: what a bad JPEG does"},
    {"--jobs", F_IMAGENET, true, "N: threads decoding JPEGs (default: OpenMP's, all cores)"},
    {"--shard-images", F_IMAGENET, true, "K: numbered shards of K images (resumable), below"},
    {"--quiet", F_ALL, false, "no progress bar, no notes (the summary line stays)"},
    {"--help", F_ALL, false, "this text"},
};
#define N_OPTIONS ((int)(sizeof options / sizeof options[0]))

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: pfdata images --format idx --out OUT.h5 IMAGES LABELS\n"
        "       pfdata images --format cifar [--cifar100] --out OUT.h5 BATCH.bin...\n"
        "       pfdata images --format imagenet --out OUT.h5 [--size S] ROOT\n"
        "       pfdata images --format imagenet --out STEM --shard-images K [--jobs N] ROOT\n"
        "Writes an HDF5 image shard: /images uint8 [N,H,W,C], /labels int32 [N], /class_names,\n"
        "attributes num_classes, mean, std, source.\n"
        "  idx:      MNIST / Fashion-MNIST IDX files, gzip or plain; C = 1; the labels file\n"
        "            must hold as many labels as the images file holds images.\n"
        "  cifar:    CIFAR-10 (1 label byte + 3072 CHW bytes) or CIFAR-100 batch files;\n"
        "            class names from batches.meta.txt (CIFAR-10) or fine_label_names.txt\n"
        "            (CIFAR-100) next to the first batch when present.\n"
        "  imagenet: ROOT/<class>/*.jpg (classes = sorted folder names), or a flat ROOT/*.jpg\n"
        "            with --labels FILE holding either one label per line in sorted file-name\n"
        "            order, or \"filename label\" lines; labels are 0-based integers, or\n"
        "            synset ids when --synsets is given (classes in that file's order).\n"
        "            --shard-images K writes STEM-00000-of-01252.h5 ...: shard i holds files\n"
        "            [i*K, (i+1)*K) in that order (fewer when corrupt ones are skipped); a\n"
        "            trailing .h5 of --out is dropped. Each shard is renamed into place when\n"
        "            complete, so a rerun with the same inputs and options keeps the complete\n"
        "            ones and writes the rest; it refuses a file by a shard's name that holds\n"
        "            another conversion. Output is the same for every --jobs. ImageNet from\n"
        "            download to shards: docs/DATA.md.\n"
        "options:\n");
    for (int i = 0; i < N_OPTIONS; i++)
        fprintf(f, "  %-14s %-6s %s\n", options[i].name, options[i].takes_value ? "VALUE" : "",
                options[i].help);
    fprintf(f, "exit status: 0 ok, 1 failure (bad or truncated input, I/O), 2 usage.\n");
}

static int usage_error(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "pfdata images: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\nRun 'pfdata images --help' for the options.\n");
    return PF_EXIT_USAGE;
}

static int find_option(const char *name, size_t len) {
    for (int i = 0; i < N_OPTIONS; i++)
        if (strlen(options[i].name) == len && !strncmp(options[i].name, name, len)) return i;
    return -1;
}

static const char *value_of(const char *const *values, const char *name) {
    int k = find_option(name, strlen(name));
    PF_ASSERT(k >= 0);
    return values[k];
}

// Bounds of --jobs and --shard-images (one shard holds at most a billion images).
#define MAX_JOBS 1024
#define MAX_SHARD_IMAGES 1000000000LL

// The integer option `name` into *v when given: 0, or PF_EXIT_USAGE (said why) when its value
// is not an integer in [lo, hi].
static int int_option(const char *const *values, const char *name, long long lo, long long hi,
                      long long *v) {
    const char *text = value_of(values, name);
    if (!text) return 0;
    char *end;
    errno = 0;
    long long x = strtoll(text, &end, 10);
    if (end == text || *end || errno || x < lo || x > hi) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s '%.64s' must be an integer in [%lld, %lld]", name, text, lo,
                 hi);
        return usage_error("%s%s", msg, "");
    }
    *v = x;
    return 0;
}

static const char *closest_option(const char *name) {
    int best = -1, dist = 4;
    for (int i = 0; i < N_OPTIONS; i++) {
        int d = pf_edit_distance(name, options[i].name);
        if (d < dist) dist = d, best = i;
    }
    return best < 0 ? "" : options[best].name;
}

int pfdata_images_main(int argc, char **argv) {
    const char *values[N_OPTIONS] = {0};
    pf_convert_result r = {0};
    char **in = pf_malloc(sizeof *in * (size_t)(argc ? argc : 1));
    int n_in = 0, rc = PF_EXIT_USAGE;
    bool opts_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (opts_done || strncmp(a, "--", 2)) {
            in[n_in++] = argv[i];
            continue;
        }
        if (!strcmp(a, "--")) {
            opts_done = true;
            continue;
        }
        const char *eq = strchr(a, '=');
        int k = find_option(a, eq ? (size_t)(eq - a) : strlen(a));
        if (k < 0) {
            const char *near = closest_option(a);
            rc = usage_error(
                *near ? "unknown option '%s'; did you mean '%s'?" : "unknown option '%s'%s", a,
                near);
            goto out;
        }
        if (!options[k].takes_value) {
            values[k] = "1";
        } else if (eq) {
            values[k] = eq + 1;
        } else if (i + 1 < argc) {
            values[k] = argv[++i];
        } else {
            rc = usage_error("option '%s' needs a value%s", a, "");
            goto out;
        }
    }
    if (value_of(values, "--help")) {
        usage(stdout);
        rc = PF_EXIT_OK;
        goto out;
    }
    const char *format = value_of(values, "--format"), *out = value_of(values, "--out");
    static const char *const names[] = {"idx", "cifar", "imagenet"};
    int fmt = 0;
    for (int f = 0; f < 3; f++)
        if (format && !strcmp(format, names[f])) fmt = 1 << f;
    if (!fmt) {
        rc = usage_error("--format must be idx, cifar or imagenet (got '%s')%s",
                         format ? format : "nothing", "");
        goto out;
    }
    if (!out || !*out) {
        rc = usage_error("--out OUT.h5 is required%s%s", "", "");
        goto out;
    }
    for (int k = 0; k < N_OPTIONS; k++)
        if (values[k] && !(options[k].formats & fmt)) {
            rc = usage_error("option '%s' does not apply to --format %s", options[k].name, format);
            goto out;
        }
    pf_convert_opts o = {
        .out = out,
        .class_names = value_of(values, "--class-names"),
        .classes = value_of(values, "--classes"),
        .cifar100 = value_of(values, "--cifar100") != NULL,
        .labels = value_of(values, "--labels"),
        .synsets = value_of(values, "--synsets"),
        .progress = !value_of(values, "--quiet") && isatty(STDERR_FILENO),
        .quiet = value_of(values, "--quiet") != NULL,
    };
    long long size = 256, jobs = 0, shard_images = 0;
    if ((rc = int_option(values, "--size", 1, 8192, &size)) ||
        (rc = int_option(values, "--jobs", 1, MAX_JOBS, &jobs)) ||
        (rc = int_option(values, "--shard-images", 1, MAX_SHARD_IMAGES, &shard_images)))
        goto out;
    o.size = (int)size, o.jobs = (int)jobs, o.shard_images = shard_images;
    const char *corrupt = value_of(values, "--on-corrupt");
    if (corrupt && strcmp(corrupt, "skip") && strcmp(corrupt, "stop")) {
        rc = usage_error("--on-corrupt must be skip or stop (got '%s')%s", corrupt, "");
        goto out;
    }
    o.skip_corrupt = corrupt && !strcmp(corrupt, "skip");
    if (o.classes && strcmp(o.classes, "fashion-mnist")) {
        rc = usage_error("--classes '%s' is not a known preset; the one preset is fashion-mnist%s",
                         o.classes, "");
        goto out;
    }
    int want = fmt == F_IDX ? 2 : fmt == F_IMAGENET ? 1 : -1;
    if ((want > 0 && n_in != want) || n_in == 0) {
        const char *what = fmt == F_IDX        ? "two inputs, IMAGES and LABELS"
                           : fmt == F_IMAGENET ? "one input, the ROOT folder"
                                               : "at least one batch file";
        rc = usage_error("--format %s takes %s", format, what);
        goto out;
    }

    // One output file: refused when it exists (numbered shards are checked one by one: a
    // complete one of this conversion is kept, any other file refused).
    struct stat st;
    if (!o.shard_images && lstat(out, &st) == 0) {
        rc = usage_error("'%s' exists: pfdata does not overwrite a file; remove it or choose "
                         "another --out%s", out, "");
        goto out;
    }

    double t0 = pf_now();
    int (*convert)(const pf_convert_opts *, int, char **, pf_convert_result *) =
        fmt == F_IDX     ? pf_convert_idx
        : fmt == F_CIFAR ? pf_convert_cifar
                         : pf_convert_imagenet;
    // Until the shard is renamed into place, Ctrl-C or SIGTERM removes its temporary.
    pf_interrupt_saved signals;
    pf_interrupt_begin(&signals);
    int converted = convert(&o, n_in, in, &r);
    pf_interrupt_end(&signals);
    if (converted < 0) {
        fprintf(stderr, "pfdata images: error: %s\n", pf_errmsg());
        rc = PF_EXIT_FAILURE;
        goto out;
    }
    double dt = pf_now() - t0;
    if (r.out)
        fprintf(stderr, "pfdata images: %s: wrote %lld shards, kept %lld complete from before; ",
                r.out, (long long)r.shards_written, (long long)r.shards_kept);
    else
        fprintf(stderr, "pfdata images: wrote %s: ", out);
    fprintf(stderr, "%lld images %dx%dx%d, %d classes in %.2f s (%.0f images/s)",
            (long long)r.images, r.H, r.W, r.C, r.num_classes, dt, r.images / (dt + 1e-9));
    if (r.skipped) fprintf(stderr, "; skipped %lld corrupt", (long long)r.skipped);
    if (r.warnings) fprintf(stderr, "; %lld decoded with warnings", (long long)r.warnings);
    fprintf(stderr, "\n");
    rc = PF_EXIT_OK;
out:
    free(r.out);
    free(in);
    return rc;
}
