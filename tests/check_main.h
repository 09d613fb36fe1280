// check_main.h: helpers shared by the Check suites.
#ifndef PF_CHECK_MAIN_H
#define PF_CHECK_MAIN_H

#include <check.h>

Suite *pf_test_suite(void);

// Directory of the shared test data (PIXELFLY_DATA, default ../shared/data relative to the
// repository root); NULL when it does not exist, after printing a visible SKIP line.
const char *pf_test_data_dir(const char *what);

// A fresh scratch directory per test: use the two as a Check checked fixture. The directory
// and everything below it is removed in teardown.
void pf_test_tmpdir_setup(void);
void pf_test_tmpdir_teardown(void);
const char *pf_test_tmpdir(void);
// "TMPDIR/name"; the returned string stays valid for the next 15 calls.
const char *pf_test_path(const char *name);

#endif
