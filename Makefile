# pixelfly build. `make` builds the library and the tools (CPU always; CUDA objects too
# when nvcc is found, or with CUDA=1; CUDA=0 forces a CPU-only build).
#   make test        CPU test suite (Check)          make test-mpi   MPI/checkpoint fault tests
#   make test-gpu    every CUDA op against the CPU   make test-slurm a real Slurm job
#   make test-emu    test-gpu's suite on the CPU: kernels/*.cu under emulation (tests/emu)
#   make test-cluster a two-node Slurm cluster in network namespaces, node failure (root)
#   make test-torch  exports (pftrain export) against PyTorch references (tests/torch)
#   make gpu-bundle  binaries + libraries for a lent GPU machine (tests/gpu/session.sh)
#   make bench       pfbench kernels: Pixelfly vs dense layers, side by side
#   make fuzz        libFuzzer harnesses (tests/fuzz), FUZZ_SECONDS each (default 60)
#   make test-sanitize test and test-mpi built with ASan + UBSan (SAN_BUILD, default build-san)
#   make deps        install Debian packages
#   make quickstart  Fashion-MNIST: Pixelfly Mixer vs dense, side by side
# CPU_AVX512=0: the CPU vector loops get AVX2 and baseline clones only, no AVX-512 (to measure
# an AVX2 machine's code on an AVX-512 one: bench/cpu_vs_torch.sh, ISA=avx2).
# BUILD=DIR: where every target builds and what its test scripts run (default build/; test-emu
# of a CUDA build uses DIR-emu, the fuzzers FUZZ_BUILD).

CC      ?= gcc
NVCC    ?= nvcc
BUILD   ?= build
PKGS    := hdf5-serial check libcjson libpcre2-8 inih libturbojpeg openblas ompi-c zlib

ifeq ($(origin CUDA), undefined)
  CUDA := $(if $(shell command -v $(NVCC) 2>/dev/null),1,0)
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  ?= -O2 -g
# -fno-math-errno and -fno-trapping-math let GCC vectorise math calls and float compares
# (clamps, maxima) without changing any result; no -ffast-math, which would reorder sums.
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -fopenmp -fno-math-errno -fno-trapping-math -Isrc -Icomm -Idatasets -Ikernels $(PKG_CFLAGS)
LDLIBS  := $(PKG_LIBS) -fopenmp -lm
ifeq ($(CPU_AVX512),0)
  CFLAGS += -DPF_CPU_NO_AVX512
endif

MAINS    := $(wildcard src/cli/*.c)
LIB_SRC  := $(wildcard src/*.c src/cpu/*.c src/models/*.c src/bench/*.c datasets/*.c comm/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TOOLS    := $(MAINS:src/cli/%.c=$(BUILD)/%)
TEST_SRC := $(wildcard tests/test_*.c)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

ifeq ($(CUDA),1)
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(shell command -v $(NVCC)))
  CU_SRC   := $(wildcard kernels/*.cu)
  LIB_OBJ  += $(CU_SRC:%.cu=$(BUILD)/%.o)
  CFLAGS   += -DPF_CUDA -I$(CUDA_HOME)/include
  NVFLAGS  := -O3 -std=c++20 -DPF_CUDA -Isrc -Ikernels -Icomm \
              -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_80,code=sm_80 \
              -gencode=arch=compute_80,code=compute_80 \
              -Xcompiler -Wall,-Wextra,-Wno-missing-field-initializers --expt-relaxed-constexpr -Werror all-warnings
  LDLIBS   += -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/lib -lcublasLt -lcublas -lcusparse -lnccl -lcudart -lstdc++
endif

.PHONY: all test test-mpi test-gpu test-emu test-slurm test-cluster test-torch bench deps clean quickstart \
        gpu-bundle emu-build
all: $(TOOLS) $(TESTS)

$(BUILD)/libpixelfly.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%: $(BUILD)/src/cli/%.o $(BUILD)/libpixelfly.a
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(BUILD)/tests/check_main.o $(BUILD)/libpixelfly.a
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@
# The op-test drivers share the case table (tests/op_cases.c; test_cuda_ops below and in
# tests/emu/emu.mk too).
$(BUILD)/tests/test_ops $(BUILD)/tests/test_bf16: $(BUILD)/tests/op_cases.o

# Tests run on 2 threads so results do not depend on the machine's core count; passive
# waiting keeps OpenMP from spinning when the runner is shared.
test: $(TOOLS) $(TESTS)
	@OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1 tests/run_tests.sh $(TESTS)

# The suites below (tests/*/run.sh, bundle.sh) only run programs: every one they run is built
# here first, in $(BUILD) (each script's header says what to make before running it by hand).

# The GPU suite is a plain program (the GPU machines lack Check); it skips without a GPU.
$(BUILD)/tests/gpu/test_cuda_ops: $(BUILD)/tests/gpu/test_cuda_ops.o $(BUILD)/tests/op_cases.o \
                                  $(BUILD)/libpixelfly.a
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

# The communicator test (tests/mpi; the GPU bundle runs its NCCL case).
$(BUILD)/tests/mpi/comm_test: $(BUILD)/tests/mpi/comm_test.o $(BUILD)/libpixelfly.a
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

# The PyTorch reference test (tests/torch/run.sh): Debian's python3-torch (`make deps`), so the
# interpreter is Debian's python3 when there is one.
TORCH_PYTHON ?= $(if $(wildcard /usr/bin/python3),/usr/bin/python3,python3)
$(BUILD)/tests/torch/pf_reference: $(BUILD)/tests/torch/pf_reference.o $(BUILD)/libpixelfly.a
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

test-torch: $(BUILD)/pftrain $(BUILD)/tests/torch/pf_reference
	@OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1 BUILD=$(BUILD) \
	    PYTHON=$(TORCH_PYTHON) tests/torch/run.sh

# test-gpu and gpu-bundle are CUDA builds whatever CUDA says (nvcc needed).
# (pfdata makes the bundle's token shards when data/ lacks them.)
GPU_PROGRAMS := $(BUILD)/pftrain $(BUILD)/pfbench $(BUILD)/pfdata \
                $(BUILD)/tests/gpu/test_cuda_ops $(BUILD)/tests/mpi/comm_test
test-gpu:
	$(MAKE) --no-print-directory CUDA=1 $(BUILD)/tests/gpu/test_cuda_ops
	BUILD=$(BUILD) tests/gpu/run.sh

# $(BUILD)/gpu-bundle: what tests/gpu/session.sh needs on a lent GPU machine.
gpu-bundle:
	$(MAKE) --no-print-directory CUDA=1 $(GPU_PROGRAMS)
	BUILD=$(BUILD) tests/gpu/bundle.sh

# The GPU suite without a GPU: the CUDA kernels' source compiled by g++ against the emulation
# in tests/emu (tests/emu/emu.mk), under ASan and UBSan, linked with a CPU-only library:
# $(BUILD)'s own when this is a CPU-only build, else one in $(BUILD)-emu (build-emu/ by default).
EMU_BUILD ?= $(if $(filter 1,$(CUDA)),$(BUILD)-emu,$(BUILD))
test-emu: emu-build
	BUILD=$(EMU_BUILD) tests/emu/run.sh

# The emulated kernels take minutes to compile: two jobs unless make was given -j.
emu-build:
	$(MAKE) --no-print-directory $(if $(findstring -j,$(MAKEFLAGS)),,-j2) CUDA=0 \
	    BUILD=$(EMU_BUILD) $(EMU_BUILD)/emu/test_streams $(EMU_BUILD)/emu/test_cuda_ops

include tests/emu/emu.mk

test-mpi: $(TOOLS) $(BUILD)/tests/mpi/comm_test
	BUILD=$(BUILD) tests/mpi/run.sh

test-slurm: $(TOOLS)
	BUILD=$(BUILD) tests/slurm/run.sh

test-cluster: $(TOOLS)
	BUILD=$(BUILD) tests/cluster/run.sh

# make test's and make test-mpi's suites again, everything rebuilt in SAN_BUILD with
# AddressSanitizer and UndefinedBehaviorSanitizer (CPU only): any report aborts the program
# and fails its test. Leak checking is off here:
# Open MPI leaks by design, and LeakSanitizer's tracer now and then crashes beside OpenMP's
# threads; the fuzzers check the parsers for leaks.
SAN_BUILD  ?= build-san
SAN_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
.PHONY: test-sanitize
test-sanitize:
	CFLAGS="$(SAN_CFLAGS)" ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
	    $(MAKE) CUDA=0 BUILD=$(SAN_BUILD) test test-mpi

# libFuzzer harnesses (tests/fuzz): the library rebuilt by clang in build-fuzz/ (CPU only,
# ASan + UBSan + fuzzer coverage), one binary per tests/fuzz/fuzz_*.c, each run for
# FUZZ_SECONDS on a scratch copy of its seed corpus (tests/fuzz/corpus/NAME); fails on a crash.
FUZZ_BUILD   ?= build-fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZERS      := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
.PHONY: fuzz fuzz-build fuzzers
fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZ_BUILD)/fuzz $(FUZZ_SECONDS)

fuzz-build:
	CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
	    -fno-sanitize-recover=undefined -Wno-pass-failed" $(MAKE) CC=$(FUZZ_CC) CUDA=0 BUILD=$(FUZZ_BUILD) fuzzers

fuzzers: $(FUZZERS)

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.c tests/fuzz/fuzz.h \
                      $(BUILD)/libpixelfly.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer $(filter %.c %.a,$^) $(LDLIBS) -o $@

bench: $(TOOLS)
	$(BUILD)/pfbench kernels

# The README's first command: Fashion-MNIST, Pixelfly Mixer vs its dense twin.
quickstart: deps
	$(MAKE) $(TOOLS)
	launch/quickstart.sh

DEB_PKGS := build-essential pkg-config libopenmpi-dev openmpi-bin libhdf5-dev check \
            libsubunit-dev libopenblas-dev libinih-dev libcjson-dev libpcre2-dev \
            libturbojpeg0-dev zlib1g-dev gnuplot-nox dataset-fashion-mnist \
            clang libclang-rt-14-dev libomp-dev python3-torch python3-numpy
# Installs only what is missing; a no-op when everything is present.
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | \
	    grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "deps: all packages present"; exit 0; fi; \
	echo "deps: installing" $$missing; \
	sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
