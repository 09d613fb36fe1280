// check_main.c: the main() of every test binary. Each tests/test_*.c defines
// pf_test_suite(); this runs it and exits non-zero on any failure.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>

#include "check_main.h"

int main(void) {
    SRunner *sr = srunner_create(pf_test_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

const char *pf_test_data_dir(const char *what) {
    const char *dir = getenv("PIXELFLY_DATA");
    if (!dir || !*dir) dir = "../shared/data";
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return dir;
    printf("SKIP %s: shared test data not found at '%s' (set PIXELFLY_DATA)\n", what, dir);
    if (getenv("PIXELFLY_REQUIRE_DATA") && !strcmp(getenv("PIXELFLY_REQUIRE_DATA"), "1")) {
        printf("FAIL: PIXELFLY_REQUIRE_DATA=1 and the shared data is missing\n");
        exit(EXIT_FAILURE);
    }
    return NULL;
}

// The current test's scratch directory (each test runs in its own forked process).
static char test_tmpdir[64];

void pf_test_tmpdir_setup(void) {
    snprintf(test_tmpdir, sizeof test_tmpdir, "/tmp/pf_test_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(test_tmpdir));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void pf_test_tmpdir_teardown(void) {
    nftw(test_tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *pf_test_tmpdir(void) { return test_tmpdir; }

const char *pf_test_path(const char *name) {
    static char buf[16][512];
    static int next;
    char *p = buf[next++ % 16];
    snprintf(p, sizeof buf[0], "%s/%s", test_tmpdir, name);
    return p;
}
