#!/usr/bin/env bash
# make-seeds.sh: regenerates the binary seed inputs of tests/fuzz/corpus/ with the project's
# own tools (build/pfdata, build/pftrain; `make` first, and `make fuzz-build` for the
# checkpoint's model). The text seeds (configs, --set lists, tokenizer texts) are written by
# hand and left alone. Every seed starts with the harness's option bytes (see each
# fuzz_NAME.c). It also writes the config fuzzers' dictionary from `pftrain keys`.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
DATA=${PIXELFLY_DATA:-../shared/data}
C=tests/fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p $C/idx $C/cifar $C/jpeg $C/token_shard $C/image_shard $C/checkpoint

# IDX: 4 images of 4x4 and their labels, plain and gzip'd; CIFAR-10 and CIFAR-100 records.
python3 - "$tmp" "$C" <<'PY'
import gzip, struct, sys
tmp, C = sys.argv[1], sys.argv[2]
n, h, w = 4, 4, 4
imgs = struct.pack('>IIII', 0x803, n, h, w) + bytes((i * 37 + j * 11) % 256 for i in range(n) for j in range(h * w))
labs = struct.pack('>II', 0x801, n) + bytes([0, 1, 1, 0])
open(f'{tmp}/img.idx', 'wb').write(imgs)
open(f'{tmp}/lab.idx', 'wb').write(labs)
def idx_seed(name, labs, imgs, preset=False):
    L = len(labs) | (0x8000 if preset else 0)
    open(f'{C}/idx/{name}', 'wb').write(struct.pack('<H', L) + labs + imgs)
idx_seed('plain', labs, imgs)
idx_seed('gzip-fashion-mnist', gzip.compress(labs, mtime=0), gzip.compress(imgs, mtime=0), True)
rec = lambda label_bytes, k: bytes(label_bytes) [:-1] + bytes([k % 10]) + bytes((k * 7 + p) % 256 for p in range(3072))
open(f'{C}/cifar/cifar10-2', 'wb').write(b'\x00' + rec(1, 3) + rec(1, 9))
open(f'{C}/cifar/cifar100-1', 'wb').write(b'\x01' + rec(2, 5))
PY

# JPEG: gray, 4:2:0, progressive 4:4:4 and CMYK (YCCK) files from libturbojpeg; the option
# byte 0x07 asks for --size 8.
cat > "$tmp/mkjpeg.c" <<'CC'
#include <stdio.h>
#include <stdlib.h>
#include <turbojpeg.h>
static void put(const char *path, int w, int h, int pf, int samp, int flags) {
    int ps = tjPixelSize[pf];
    unsigned char *px = malloc((size_t)w * h * ps), *jpg = NULL;
    for (int i = 0; i < w * h * ps; i++) px[i] = (unsigned char)(i * 29 + (i / ps) * 3);
    unsigned long len = 0;
    tjhandle tj = tjInitCompress();
    if (tjCompress2(tj, px, w, 0, h, pf, &jpg, &len, samp, 75, flags) < 0) {
        fprintf(stderr, "%s: %s\n", path, tjGetErrorStr2(tj));
        exit(1);
    }
    FILE *f = fopen(path, "wb");
    fputc(0x07, f);
    fwrite(jpg, 1, len, f);
    fclose(f);
    tjFree(jpg), tjDestroy(tj), free(px);
}
int main(int argc, char **argv) {
    (void)argc;
    char p[4096];
    snprintf(p, sizeof p, "%s/gray-8x8", argv[1]), put(p, 8, 8, TJPF_GRAY, TJSAMP_GRAY, 0);
    snprintf(p, sizeof p, "%s/rgb420-16x8", argv[1]), put(p, 16, 8, TJPF_RGB, TJSAMP_420, 0);
    snprintf(p, sizeof p, "%s/progressive-9x7", argv[1]);
    put(p, 9, 7, TJPF_RGB, TJSAMP_444, TJFLAG_PROGRESSIVE);
    snprintf(p, sizeof p, "%s/cmyk-8x8", argv[1]), put(p, 8, 8, TJPF_CMYK, TJSAMP_444, 0);
    return 0;
}
CC
cc -O1 -o "$tmp/mkjpeg" "$tmp/mkjpeg.c" -lturbojpeg
"$tmp/mkjpeg" $C/jpeg

# Token shard: a few lines of tinyshakespeare through `pfdata text` (>= 17 tokens: the
# harness's loader reads batches of 2 x 8).
head -c 300 "$DATA/tinyshakespeare/input.txt" > "$tmp/text.txt"
# (pfdata never overwrites a file: this script's own seeds are replaced on purpose.)
rm -f $C/token_shard/tinyshakespeare.h5 $C/image_shard/idx-4x4.h5
"$BUILD/pfdata" text --quiet --vocab "$DATA/gpt2" --out $C/token_shard/tinyshakespeare.h5 \
    "$tmp/text.txt"

# (corpus/*/legacy-vlen-strings.h5, kept by hand: shards as pixelfly wrote them before its
# strings became fixed-length, HDF5 1.8 format with variable-length strings, so the readers'
# variable-length path stays fuzzed.)

# Image shard: the 4 IDX images through `pfdata images`.
"$BUILD/pfdata" images --quiet --format idx --out $C/image_shard/idx-4x4.h5 \
    "$tmp/img.idx" "$tmp/lab.idx"

# safetensors: two small files by the format's definition (not by pixelfly's writer, so the
# reader is seeded with bytes it did not make): F32 with metadata; BF16 with a scalar, an
# empty tensor and a 3-d one; and a header that lists its entries against their data's order,
# empty tensors at a full one's offset (the format allows any header order).
python3 - "$C/safetensors" <<'PY'
import json, struct, sys
def write(path, tensors, meta=None, reverse=False):
    header, blobs, off = {}, [], 0
    for name, (dtype, shape, vals) in tensors.items():
        if dtype == "F32":
            b = b"".join(struct.pack("<f", v) for v in vals)
        else:
            b = b"".join(struct.pack("<H", struct.unpack("<I", struct.pack("<f", v))[0] >> 16)
                         for v in vals)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    if reverse:
        header = dict(reversed(list(header.items())))
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
d = sys.argv[1] + "/"
write(d + "f32-meta.safetensors", {"wte": ("F32", [3, 2], [0.5, -1, 2, 3.25, 0, 1e-3]),
                                   "b": ("F32", [2], [1, 2])},
      {"format": "pt", "pixelfly": "native"})
write(d + "bf16-scalar-empty.safetensors",
      {"s": ("BF16", [], [1.5]), "e": ("BF16", [0, 4], []),
       "m": ("BF16", [2, 2, 2], [1, -2, 3, -4, 0.5, 0.25, 8, 16])})
write(d + "unordered-empty.safetensors",
      {"e": ("F32", [0], []), "m": ("BF16", [], [1.0]), "s": ("BF16", [0, 4], []),
       "w": ("F32", [2], [3, -0.5])}, reverse=True)
PY

# The dictionary fuzz_config_file and fuzz_config_set share (config_set.dict links to it),
# from `pftrain keys` so that new keys and values reach the fuzzers: the sections, every key
# bare and as "section.key=", the renamed keys (config.c's ALIASES), the words of the enum
# choices and of the layer-spec forms, and some syntax.
keys=$("$BUILD/pftrain" keys | tail -n +2)
{
  echo '# Generated by tests/fuzz/make-seeds.sh from `pftrain keys`; do not edit.'
  awk '{split($1, p, "."); print "\"[" p[1] "]\""}' <<<"$keys" | sort -u
  awk '{k = $1; sub(/^[a-z]+\./, "", k); print "\"" k "\""; print "\"" $1 "=\""}' <<<"$keys"
  printf '"%s"\n' fuse_mlp pixelfly.fuse_mlp=
  { grep -o '[a-z0-9_]*\(|[a-z0-9_]*\)\+' <<<"$keys" | tr '|' '\n'
    grep '^pixelfly.attn_qkv ' <<<"$keys" | sed 's/^[^:]*: //' | grep -o '[a-z]\+=\?'
  } | sort -u | sed 's/.*/"&"/'
  printf '"%s"\n' " = " true false 1e-8 -0 nan inf 0x10 '\\n' '\\t' ";" "#" " ;" ":" ","
} > tests/fuzz/config_file.dict
ln -sf config_file.dict tests/fuzz/config_set.dict

# Checkpoint: 2 steps of pftrain on fuzz_checkpoint's model and that image shard.
PF_FUZZ_WRITE_MODEL_INI="$tmp/model.ini" "${FUZZ_BUILD:-build-fuzz}/fuzz/fuzz_checkpoint"
"$BUILD/pftrain" "$tmp/model.ini" --set data.train=$C/image_shard/idx-4x4.h5 \
    --set run.out_dir="$tmp/run" > /dev/null
cp "$tmp/run/checkpoints/ckpt-00000002.h5" $C/checkpoint/mixer-step2.h5

# Regression input: a checkpoint of no parameters (pf_checkpoint_save, 2 ranks) whose /config
# chunk fails its checksum; pf_checkpoint_read_config used to leak the text buffer on it.
cat > "$tmp/mkckpt.c" <<'CC'
#include <hdf5.h>
#include <stdio.h>
#include "checkpoint.h"
#include "common.h"
int main(int argc, char **argv) {
    (void)argc;
    pf_layout l;
    pf_layout_init(&l);
    float x = 0;
    uint64_t rng[4] = {1337, 0, 1337, 1};
    int64_t cur[4] = {0, 2, 0, 2};
    pf_checkpoint_state st = {.step = 2, .world = 2, .rng_words = 2, .rng = rng, .cursors = cur,
                              .config_text = "[model]\ntype = mixer\n"};
    char path[4096];
    if (pf_checkpoint_save(argv[1], &l, &x, &x, &x, &st) || pf_checkpoint_path(path, sizeof path, argv[1], 2)) {
        fprintf(stderr, "mkckpt: %s\n", pf_errmsg());
        return 1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "config", H5P_DEFAULT);
    haddr_t addr;
    hsize_t off[1], size;
    unsigned mask;
    hid_t sp = H5Dget_space(d);
    if (H5Dget_chunk_info(d, sp, 0, off, &mask, &addr, &size) < 0) return 1;
    H5Sclose(sp), H5Dclose(d), H5Fclose(f);
    FILE *fp = fopen(path, "r+b");
    fseek(fp, (long)(addr + size / 2), SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, (long)(addr + size / 2), SEEK_SET);
    fputc(c ^ 0x10, fp);
    fclose(fp);
    puts(path);
    return 0;
}
CC
cc -std=c11 -D_GNU_SOURCE -fopenmp -Isrc -Icomm -Idatasets $(pkg-config --cflags hdf5-serial) \
    -o "$tmp/mkckpt" "$tmp/mkckpt.c" "$BUILD/libpixelfly.a" \
    $(pkg-config --libs hdf5-serial check libcjson libpcre2-8 inih libturbojpeg openblas ompi-c zlib) -lm
cp "$("$tmp/mkckpt" "$tmp/empty")" $C/checkpoint/regress-corrupt-config.h5
du -sh tests/fuzz/corpus
