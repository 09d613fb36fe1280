// h5util.c: shared HDF5 helpers (h5util.h).
#include "h5util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

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

static hid_t vlen_string_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

// A fixed-length, NUL-terminated UTF-8 string type of `size` bytes (the NUL included).
static hid_t fixed_string_type(size_t size) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    if (H5Tset_size(t, size ? size : 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

int pf_h5_write_string_attr(hid_t loc, const char *name, const char *value) {
    hid_t type = fixed_string_type(strlen(value) + 1), space = -1, a = -1;
    int rc = -1;
    if (type >= 0 && (space = H5Screate(H5S_SCALAR)) >= 0 &&
        (a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
        H5Awrite(a, type, value) >= 0)
        rc = 0;
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    return rc;
}

// Reads n strings of file type ftype through `read` (H5Aread or H5Dread of obj) into out.
typedef herr_t (*read_fn)(hid_t obj, hid_t mem_type, void *buf);
static herr_t attr_read(hid_t a, hid_t t, void *buf) { return H5Aread(a, t, buf); }
static herr_t dset_read(hid_t d, hid_t t, void *buf) {
    return H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
}

static int read_strings_as(hid_t obj, hid_t ftype, read_fn read, int n, char **out) {
    if (H5Tget_class(ftype) != H5T_STRING) return -1;
    int rc = -1;
    if (H5Tis_variable_str(ftype) > 0) {
        hid_t mt = vlen_string_type();
        char **tmp = mt < 0 ? NULL : calloc((size_t)n, sizeof *tmp);
        if (tmp && read(obj, mt, tmp) >= 0) {
            for (int i = 0; i < n; i++) out[i] = pf_strdup(tmp[i] ? tmp[i] : "");
            for (int i = 0; i < n; i++) H5free_memory(tmp[i]);
            rc = 0;
        }
        free(tmp);
        if (mt >= 0) H5Tclose(mt);
        return rc;
    }
    size_t size = H5Tget_size(ftype);
    if (size == 0 || size > PF_H5_STRING_MAX) return -1;
    hid_t mt = fixed_string_type(size);
    char *buf = mt < 0 ? NULL : calloc((size_t)n, size);
    if (buf && read(obj, mt, buf) >= 0) {
        for (int i = 0; i < n; i++) {
            out[i] = pf_malloc(size + 1);
            memcpy(out[i], buf + (size_t)i * size, size);
            out[i][size] = 0;
        }
        rc = 0;
    }
    free(buf);
    if (mt >= 0) H5Tclose(mt);
    return rc;
}

char *pf_h5_read_string_attr(hid_t loc, const char *name) {
    char *out = NULL;
    pf_h5_quiet q = pf_h5_quiet_begin();
    hid_t a = H5Aexists(loc, name) > 0 ? H5Aopen(loc, name, H5P_DEFAULT) : -1;
    hid_t type = a >= 0 ? H5Aget_type(a) : -1, space = a >= 0 ? H5Aget_space(a) : -1;
    if (type >= 0 && space >= 0 && H5Sget_simple_extent_npoints(space) == 1 &&
        read_strings_as(a, type, attr_read, 1, &out) < 0)
        out = NULL;
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (a >= 0) H5Aclose(a);
    pf_h5_quiet_end(q);
    return out;
}

int pf_h5_write_strings(hid_t loc, const char *name, char *const *strings, int n) {
    size_t longest = 0;
    for (int i = 0; i < n; i++)
        if (strlen(strings[i]) > longest) longest = strlen(strings[i]);
    hid_t type = fixed_string_type(longest + 1), sp = -1, ds = -1;
    hsize_t dims[1] = {(hsize_t)n};
    char *buf = calloc((size_t)(n ? n : 1), longest + 1);
    int rc = -1;
    if (buf) {
        for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * (longest + 1), strings[i], strlen(strings[i]));
        if (type >= 0 && (sp = H5Screate_simple(1, dims, NULL)) >= 0 &&
            (ds = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
            H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0)
            rc = 0;
    }
    free(buf);
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    if (type >= 0) H5Tclose(type);
    return rc;
}

int pf_h5_read_strings(hid_t d, int n, char **out) {
    hid_t type = H5Dget_type(d);
    if (type < 0) return -1;
    int rc = read_strings_as(d, type, dset_read, n, out);
    H5Tclose(type);
    return rc;
}
