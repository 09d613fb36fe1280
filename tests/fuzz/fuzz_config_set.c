// fuzz_config_set: `pftrain --set section.key=value` overrides. The input is a list of
// NUL-separated assignments (argv strings, so a value may hold any other byte), applied in
// order with pf_config_set over the defaults, then pf_config_validate. Property: the result,
// written with pf_config_to_string, loads back to the same text (what a run directory's
// config.ini and a checkpoint's /config rely on).
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 14) return 0;
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = 0;
    pf_config c;
    pf_config_defaults(&c);
    for (char *s = buf; s <= buf + size; s += strlen(s) + 1) (void)pf_config_set(&c, s);
    free(buf);
    (void)pf_config_validate(&c);
    char *text = pf_config_to_string(&c);
    pf_config back;
    pf_config_defaults(&back);
    int rc = pf_config_load_string(&back, text, "resolved");
    if (rc != 0) fprintf(stderr, "fuzz: reload failed: %s\n--- text\n%s---\n", pf_errmsg(), text);
    FUZZ_CHECK(rc == 0);
    char *again = pf_config_to_string(&back);
    if (strcmp(text, again)) fprintf(stderr, "--- written\n%s--- reloaded\n%s---\n", text, again);
    FUZZ_CHECK(strcmp(text, again) == 0);
    free(again);
    free(text);
    return 0;
}
