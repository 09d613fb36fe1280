// plot.c: `pftrain plot RUN_DIR... --out PLOT.png`: training and validation loss of one or
// more runs against steps and against wall-clock time, via gnuplot (gnuplot-nox).
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

// Extracts "key": number from a JSON line; false when absent.
static bool json_number(const char *line, const char *key, double *out) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return false;
    *out = strtod(p + strlen(pat), NULL);
    return true;
}

// Writes RUN/plot-train.dat (step, elapsed, loss) and RUN/plot-val.dat (step, elapsed,
// val_loss) from RUN/metrics.jsonl. Validation lines take the elapsed time of the last
// training line before them.
static int extract(const char *run, const char *tmpdir, int idx) {
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *in = fopen(path, "r");
    if (!in) {
        pf_error("cannot read '%s': %s (is '%s' a run directory?)", path, strerror(errno), run);
        return -1;
    }
    snprintf(path, sizeof path, "%s/train%d.dat", tmpdir, idx);
    FILE *tr = fopen(path, "w");
    snprintf(path, sizeof path, "%s/val%d.dat", tmpdir, idx);
    FILE *va = fopen(path, "w");
    PF_ASSERT(tr && va);
    char line[4096];
    double elapsed = 0, step, v;
    while (fgets(line, sizeof line, in)) {
        if (!json_number(line, "step", &step)) continue;
        if (json_number(line, "elapsed_s", &v)) elapsed = v;
        if (json_number(line, "loss", &v)) fprintf(tr, "%g %g %g\n", step, elapsed, v);
        if (json_number(line, "val_loss", &v)) fprintf(va, "%g %g %g\n", step, elapsed, v);
    }
    fclose(in);
    fclose(tr);
    fclose(va);
    return 0;
}

int pf_plot_main(int argc, char **argv) {
    const char *out = "loss.png";
    const char *runs[64];
    int nruns = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (argv[i][0] != '-' && nruns < 64) runs[nruns++] = argv[i];
        else {
            fprintf(stderr, "pftrain plot: unexpected argument '%s'\n", argv[i]);
            return PF_EXIT_USAGE;
        }
    }
    if (nruns == 0) {
        fprintf(stderr, "usage: pftrain plot RUN_DIR... [--out PLOT.png]\n");
        return PF_EXIT_USAGE;
    }
    char tmpdir[] = "/tmp/pfplot.XXXXXX";
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "pftrain plot: cannot create a temporary directory: %s\n",
                strerror(errno));
        return PF_EXIT_FAILURE;
    }
    int rc = PF_EXIT_OK;
    for (int i = 0; i < nruns && rc == PF_EXIT_OK; i++)
        if (extract(runs[i], tmpdir, i) < 0) {
            fprintf(stderr, "pftrain plot: %s\n", pf_errmsg());
            rc = PF_EXIT_USAGE;
        }
    char script[4096 * 4];
    if (rc == PF_EXIT_OK) {
        size_t n = 0;
        n += snprintf(script + n, sizeof script - n,
                      "set terminal pngcairo size 1400,550 noenhanced\nset output '%s'\n"
                      "set multiplot layout 1,2\nset grid\nset ylabel 'loss'\nset key top right\n",
                      out);
        for (int pass = 0; pass < 2; pass++) {
            n += snprintf(script + n, sizeof script - n, "set xlabel '%s'\nplot ",
                          pass ? "wall-clock seconds" : "step");
            for (int i = 0; i < nruns; i++) {
                const char *name = strrchr(runs[i], '/') && strrchr(runs[i], '/')[1]
                                       ? strrchr(runs[i], '/') + 1 : runs[i];
                n += snprintf(script + n, sizeof script - n,
                              "%s'%s/train%d.dat' using %d:3 with lines lw 1.5 lc %d title '%s "
                              "train', '%s/val%d.dat' using %d:3 with linespoints lw 2 dt 2 "
                              "lc %d title '%s val'",
                              i ? ", " : "", tmpdir, i, pass ? 2 : 1, i + 1, name, tmpdir, i,
                              pass ? 2 : 1, i + 1, name);
            }
            n += snprintf(script + n, sizeof script - n, "\n");
        }
        n += snprintf(script + n, sizeof script - n, "unset multiplot\n");
        FILE *gp = popen("gnuplot 2>&1", "w");
        if (!gp) {
            fprintf(stderr, "pftrain plot: cannot run gnuplot (install gnuplot-nox: make deps)\n");
            rc = PF_EXIT_FAILURE;
        } else {
            fputs(script, gp);
            if (pclose(gp) != 0) {
                fprintf(stderr, "pftrain plot: gnuplot failed (install gnuplot-nox: make deps)\n");
                rc = PF_EXIT_FAILURE;
            } else {
                printf("pftrain plot: wrote %s\n", out);
            }
        }
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "pftrain plot: could not remove %s\n", tmpdir);
    return rc;
}
