// fuzz_config_file: a whole .ini file through pf_config_load (what `pftrain CONFIG` reads),
// the same text through pf_config_load_string (a checkpoint's /config), then
// pf_config_validate. Properties: both loaders agree; a loaded config written out with
// pf_config_to_string loads back to the same text (config.h: "loads back to the same config").
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    const char *path = fuzz_write_file("config.ini", data, size);
    pf_config a, b;
    pf_config_defaults(&a);
    int rc = pf_config_load(&a, path);
    (void)pf_errmsg();
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    pf_config_defaults(&b);
    int rc_string = pf_config_load_string(&b, text, "fuzz");
    free(text);
    if (rc == 0) (void)pf_config_validate(&a);
    char *sa = pf_config_to_string(&a), *sb = pf_config_to_string(&b);
    if (!memchr(data, 0, size)) {  // a NUL ends the string form early: only then may they differ
        FUZZ_CHECK(rc == rc_string);
        if (rc == 0) FUZZ_CHECK(strcmp(sa, sb) == 0);
    }
    if (rc == 0) {
        pf_config c;
        pf_config_defaults(&c);
        FUZZ_CHECK(pf_config_load_string(&c, sa, "resolved") == 0);
        char *sc = pf_config_to_string(&c);
        FUZZ_CHECK(strcmp(sa, sc) == 0);
        free(sc);
    }
    free(sa);
    free(sb);
    return 0;
}
