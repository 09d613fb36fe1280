// fuzz.c: scratch files, quiet HDF5 and the shared data folder for the harnesses.
#include "fuzz.h"

#include <errno.h>
#include <ftw.h>
#include <hdf5.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void fuzz_fail(const char *file, int line, const char *what) {
    fprintf(stderr, "fuzz: property violated at %s:%d: %s\n", file, line, what);
    abort();
}

static char tmpdir[PATH_MAX];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag;
    if (ftw->level > 0 || strcmp(path, tmpdir)) remove(path);
    return 0;
}

void fuzz_clean_tmpdir(void) {
    if (tmpdir[0]) nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_tmpdir(void) {
    fuzz_clean_tmpdir();
    if (tmpdir[0]) rmdir(tmpdir);
}

const char *fuzz_tmpdir(void) {
    if (tmpdir[0]) return tmpdir;
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/pf_fuzz_XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "fuzz: cannot create a scratch folder under %s: %s\n", base,
                strerror(errno));
        exit(1);
    }
    atexit(remove_tmpdir);
    return tmpdir;
}

const char *fuzz_path(const char *name) {
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", fuzz_tmpdir(), name);
    return path;
}

const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size) {
    const char *path = fuzz_path(name);
    for (char *s = strchr((char *)path + strlen(tmpdir) + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = 0;
        mkdir(path, 0700);
        *s = '/';
    }
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
        abort();
    }
    return path;
}

const char *fuzz_write_fresh(const char *name, const uint8_t *data, size_t size) {
    static unsigned long count;
    char fresh[PATH_MAX];
    snprintf(fresh, sizeof fresh, "%lu-%s", count++, name);
    fuzz_clean_tmpdir();
    return fuzz_write_file(fresh, data, size);
}

void fuzz_check_hdf5_closed(void) {
    static const struct {
        unsigned type;
        const char *name;
    } kinds[] = {{H5F_OBJ_FILE, "file"},         {H5F_OBJ_DATASET, "dataset"},
                 {H5F_OBJ_GROUP, "group"},       {H5F_OBJ_DATATYPE, "datatype"},
                 {H5F_OBJ_ATTR, "attribute"}};
    ssize_t total = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (total == 0) return;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        fprintf(stderr, "fuzz: open HDF5 %s ids: %zd\n", kinds[i].name,
                H5Fget_obj_count(H5F_OBJ_ALL, kinds[i].type));
    FUZZ_CHECK(total == 0);
}

void fuzz_quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *fuzz_data_dir(void) {
    static char dir[PATH_MAX];
    const char *env = getenv("PIXELFLY_DATA");
    if (env && *env) {
        if (is_dir(env)) return env;
        fprintf(stderr, "fuzz: PIXELFLY_DATA='%s' is not a folder\n", env);
        exit(1);
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        // REPO/build-fuzz/fuzz/NAME -> REPO/../shared/data
        char *repo = dirname(dirname(dirname(exe)));
        snprintf(dir, sizeof dir, "%s/../shared/data", repo);
        if (is_dir(dir)) return dir;
    }
    if (is_dir("../shared/data")) return "../shared/data";
    fprintf(stderr,
            "fuzz: the shared test data (GPT-2 vocabulary) was not found: set PIXELFLY_DATA "
            "(looked at '%s' and ../shared/data)\n",
            n > 0 ? dir : "(no /proc/self/exe)");
    exit(1);
}
