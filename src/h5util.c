// h5util.c: shared HDF5 helpers (h5util.h).
#include "h5util.h"

#include <stdio.h>

pf_h5_quiet pf_h5_quiet_begin(void) {
    pf_h5_quiet q;
    H5Eget_auto2(H5E_DEFAULT, &q.fn, &q.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return q;
}

void pf_h5_quiet_end(pf_h5_quiet q) { H5Eset_auto2(H5E_DEFAULT, q.fn, q.data); }

// The walk goes upward, from the function that detected the error (n = 0) to the API call.
static herr_t first_desc(unsigned n, const H5E_error2_t *e, void *out) {
    if (n == 0) snprintf(out, PF_H5_ERRTEXT_MAX, "%s", e->desc ? e->desc : "");
    return 0;
}

const char *pf_h5_errtext(char buf[PF_H5_ERRTEXT_MAX]) {
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_desc, buf);
    if (!buf[0]) snprintf(buf, PF_H5_ERRTEXT_MAX, "HDF5 error");
    return buf;
}

hid_t pf_h5_checksummed_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0) {
        H5Pclose(fapl);
        return -1;
    }
    return fapl;
}

hid_t pf_h5_vlen_string_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}
