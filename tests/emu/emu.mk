# tests/emu/emu.mk: the CUDA backend (kernels/*.cu) compiled by g++ for the host emulation,
# linked with the CPU library, tests/gpu/test_cuda_ops.c and its case table tests/op_cases.c
# into $(BUILD)/emu/test_cuda_ops, and the emulation's own self-test tests/emu/test_streams.cpp
# (streams, events, page-locked memory; emu_runtime.o alone) into $(BUILD)/emu/test_streams.
# Included by the Makefile, whose `emu-build` makes both with CUDA=0 (so CC, CFLAGS,
# LDLIBS and libpixelfly.a are a CPU-only build's); tests/emu/run.sh runs both. Knobs (make
# variables or the environment): EMU_SAN= (no sanitizers), EMU_OPT (default -O1 -g).
EMU_OPT  ?= -O1 -g
EMU_SAN  ?= -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# kernels/cuda_blocked_ell.cu is benchmark-only (cuSPARSE): not emulated.
EMU_CU   := $(filter-out kernels/cuda_blocked_ell.cu,$(wildcard kernels/*.cu))
EMU_OBJ  := $(EMU_CU:kernels/%.cu=$(BUILD)/emu/%.o) $(BUILD)/emu/emu_runtime.o
EMU_CXX  := g++ -std=c++20 $(EMU_OPT) $(EMU_SAN) -D__CUDACC__ -DPF_CUDA -Itests/emu/include \
            -Ikernels -Isrc -Icomm -Idatasets -include cuda_runtime.h -Wall -Wextra \
            -Wno-unused-parameter -Wno-missing-field-initializers -Wno-unknown-pragmas

$(BUILD)/emu/test_cuda_ops: $(BUILD)/emu/test_cuda_ops.o $(BUILD)/emu/op_cases.o $(EMU_OBJ) \
                            $(BUILD)/libpixelfly.a
	g++ $(EMU_SAN) $^ $(LDLIBS) -o $@
$(BUILD)/emu/test_streams: $(BUILD)/emu/test_streams.o $(BUILD)/emu/emu_runtime.o
	g++ $(EMU_SAN) $^ -o $@

.PRECIOUS: $(BUILD)/emu/%.cpp
$(BUILD)/emu/%.cpp: kernels/%.cu tests/emu/rewrite.pl
	@mkdir -p $(dir $@)
	@perl tests/emu/rewrite.pl $< $@

$(BUILD)/emu/%.o: $(BUILD)/emu/%.cpp
	$(EMU_CXX) -MMD -MP -c $< -o $@

$(BUILD)/emu/emu_runtime.o: tests/emu/emu_runtime.cpp
	@mkdir -p $(dir $@)
	$(EMU_CXX) -MMD -MP -c $< -o $@

$(BUILD)/emu/test_streams.o: tests/emu/test_streams.cpp
	@mkdir -p $(dir $@)
	$(EMU_CXX) -MMD -MP -c $< -o $@

$(BUILD)/emu/test_cuda_ops.o: tests/gpu/test_cuda_ops.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(EMU_SAN) -DPF_CUDA -Itests/emu/include -MMD -MP -c $< -o $@

$(BUILD)/emu/op_cases.o: tests/op_cases.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(EMU_SAN) -MMD -MP -c $< -o $@

# Its .d files are read with the rest of $(BUILD)'s by the Makefile.
