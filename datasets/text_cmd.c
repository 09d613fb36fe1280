// text_cmd.c: `pfdata text`: UTF-8 text files -> one HDF5 token shard (text_shard.h), GPT-2
// BPE, an end-of-text token after each file. Files are streamed in pieces of READ_CHUNK
// bytes, so memory stays bounded whatever their size.
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "interrupt.h"
#include "pfdata.h"
#include "text_shard.h"
#include "tokenizer.h"

enum { READ_CHUNK = 4 << 20 };

static void usage(FILE *f) {
    fprintf(f,
            "usage: pfdata text --vocab DIR --out OUT.h5 [--quiet] FILE...\n"
            "Tokenizes UTF-8 text FILEs, in order, with GPT-2's BPE into the token shard\n"
            "OUT.h5 (dataset /tokens), an end-of-text token after each file.\n"
            "  --vocab DIR   directory with GPT-2's encoder.json and vocab.bpe\n"
            "  --out OUT.h5  output shard, which must not exist; written to OUT.h5.tmp.PID,\n"
            "                then renamed (removed on failure, Ctrl-C or SIGTERM)\n"
            "  --quiet       no progress bar and no summary line\n"
            "  --help        this text\n");
}

typedef struct {
    bool show;  // draw the bar (stderr is a terminal and not --quiet)
    double t0, last;
    uint64_t total, done;  // input bytes
    int64_t tokens;
} progress;

static void progress_draw(progress *p, bool force) {
    double now = pf_now();
    if (!p->show || (!force && now - p->last < 0.1)) return;
    p->last = now;
    double frac = p->total ? (double)p->done / (double)p->total : 1.0;
    int width = 30, fill = (int)(frac * width);
    fprintf(stderr, "\r[%.*s%*s] %5.1f%%  %.1f MB  %.1f MB/s  %lld tokens", fill,
            "==============================", width - fill, "", 100.0 * frac,
            (double)p->done / 1e6, (double)p->done / 1e6 / (now - p->t0 + 1e-9),
            (long long)p->tokens);
    fflush(stderr);
}

// Streams one file through the tokenizer into the shard, then appends end-of-text.
static int encode_file(pf_tokenizer *tok, const char *path, pf_text_shard_writer *w,
                       progress *p) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        pf_error("cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 2 * (size_t)READ_CHUNK, have = 0;  // buf[0, have): text not yet encoded
    char *buf = pf_malloc(cap);
    uint64_t base = 0;  // file offset of buf[0]
    pf_ids ids = {0};
    int rc = -1;
    for (bool eof = false; !eof;) {
        if (cap - have < READ_CHUNK) buf = pf_realloc(buf, cap = have + 2 * (size_t)READ_CHUNK);
        size_t got = fread(buf + have, 1, READ_CHUNK, f);
        if (ferror(f)) {
            pf_error("error reading '%s' at byte offset %llu", path,
                     (unsigned long long)(base + have));
            goto done;
        }
        eof = got < READ_CHUNK;
        size_t n = have + got, consumed;
        bool truncated;
        size_t valid = pf_utf8_prefix(buf, n, &truncated);
        if (valid < n && (eof || !truncated)) {
            pf_error("%s: invalid UTF-8 at byte offset %llu (byte 0x%02x); pfdata text reads "
                     "UTF-8 only (convert with iconv)",
                     path, (unsigned long long)(base + valid), (unsigned char)buf[valid]);
            goto done;
        }
        if (pf_tokenizer_encode_stream(tok, buf, n, eof, &ids, &consumed) ||
            pf_text_shard_append(w, ids.data, ids.n)) {
            char why[1024];
            snprintf(why, sizeof why, "%s", pf_errmsg());
            pf_error("%s: %s", path, why);
            goto done;
        }
        p->tokens += (int64_t)ids.n;
        ids.n = 0;
        memmove(buf, buf + consumed, n - consumed);
        have = n - consumed;
        base += consumed;
        p->done += consumed;
        progress_draw(p, false);
    }
    int32_t eot = pf_tokenizer_eot(tok);
    rc = pf_text_shard_append(w, &eot, 1);
    p->tokens++;
done:
    fclose(f);
    free(buf);
    pf_ids_free(&ids);
    return rc;
}

// Every input must be a readable regular file before anything is written.
static int check_inputs(char **files, int n, uint64_t *total) {
    *total = 0;
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (stat(files[i], &st) != 0 || access(files[i], R_OK) != 0) {
            pf_error("cannot open '%s': %s", files[i], strerror(errno));
            return -1;
        }
        if (!S_ISREG(st.st_mode)) {
            pf_error("'%s' is not a regular file", files[i]);
            return -1;
        }
        *total += (uint64_t)st.st_size;
    }
    return 0;
}

static char *join_lines(char **s, int n) {
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(s[i]) + 1;
    char *out = pf_malloc(len), *p = out;
    for (int i = 0; i < n; i++) p += sprintf(p, i ? "\n%s" : "%s", s[i]);
    *p = 0;
    return out;
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "pfdata text: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (run 'pfdata text --help')\n");
    return PF_EXIT_USAGE;
}

int pfdata_text_main(int argc, char **argv) {
    const char *vocab = NULL, *out = NULL;
    bool quiet = false, options = true;
    char **files = pf_malloc((size_t)argc * sizeof *files);
    int nfiles = 0, rc = PF_EXIT_USAGE;
    pf_interrupt_saved signals;
    bool guarded = false;  // the interrupt handler is installed
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            usage(stdout);
            free(files);
            return PF_EXIT_OK;
        } else if (options && (!strcmp(a, "--vocab") || !strcmp(a, "--out"))) {
            if (i + 1 >= argc) {
                rc = usage_error("%s needs a value", a);
                goto out;
            }
            *(a[2] == 'v' ? &vocab : &out) = argv[++i];
        } else if (options && (!strcmp(a, "--quiet") || !strcmp(a, "-q"))) {
            quiet = true;
        } else if (options && !strcmp(a, "--")) {
            options = false;
        } else if (options && a[0] == '-' && a[1]) {
            rc = usage_error("unknown option '%s' (options: --vocab, --out, --quiet, --help)", a);
            goto out;
        } else {
            files[nfiles++] = argv[i];
        }
    }
    if (!vocab || !out || nfiles == 0) {
        rc = usage_error("%s", !vocab ? "missing --vocab DIR" : !out ? "missing --out OUT.h5"
                                                                      : "no input FILE");
        goto out;
    }

    struct stat st;
    if (lstat(out, &st) == 0) {
        rc = usage_error("'%s' exists: pfdata does not overwrite a file; remove it or choose "
                         "another --out", out);
        goto out;
    }

    rc = PF_EXIT_FAILURE;
    uint64_t total;
    if (check_inputs(files, nfiles, &total)) {
        fprintf(stderr, "pfdata text: %s\n", pf_errmsg());
        goto out;
    }
    pf_tokenizer *tok = pf_tokenizer_load(vocab);
    if (!tok) {
        fprintf(stderr, "pfdata text: --vocab %s: %s\n", vocab, pf_errmsg());
        goto out;
    }
    char *source = join_lines(files, nfiles);
    // Until the shard is renamed into place, Ctrl-C or SIGTERM removes its temporary.
    pf_interrupt_begin(&signals);
    guarded = true;
    // A token is at least one byte: total + one end-of-text per file bounds the count, so
    // a small corpus gets one small chunk.
    pf_text_shard_writer *w = pf_text_shard_create(out, pf_tokenizer_vocab_size(tok),
                                                   pf_tokenizer_eot(tok), "gpt2-bpe", source,
                                                   (int64_t)(total + (uint64_t)nfiles));
    free(source);
    if (!w) {
        fprintf(stderr, "pfdata text: %s\n", pf_errmsg());
        pf_tokenizer_free(tok);
        goto out;
    }
    progress p = {.show = !quiet && isatty(STDERR_FILENO), .t0 = pf_now(), .total = total};
    int failed = 0;
    for (int i = 0; i < nfiles && !failed; i++) failed = encode_file(tok, files[i], w, &p);
    progress_draw(&p, true);
    if (p.show) fputc('\n', stderr);
    pf_tokenizer_free(tok);
    if (failed) {
        fprintf(stderr, "pfdata text: %s\n", pf_errmsg());
        pf_text_shard_abort(w);
        goto out;
    }
    int64_t ntok = pf_text_shard_count(w);
    if (pf_text_shard_commit(w)) {
        fprintf(stderr, "pfdata text: %s\n", pf_errmsg());
        goto out;
    }
    double dt = pf_now() - p.t0 + 1e-9;
    if (!quiet)
        printf("pfdata text: wrote %s: %lld tokens from %llu bytes in %d file(s), %.2f s "
               "(%.1f MB/s, %.0f tokens/s)\n",
               out, (long long)ntok, (unsigned long long)total, nfiles, dt,
               (double)total / 1e6 / dt, (double)ntok / dt);
    rc = PF_EXIT_OK;
out:
    if (guarded) pf_interrupt_end(&signals);
    free(files);
    return rc;
}
