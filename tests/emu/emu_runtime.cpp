// emu_runtime.cpp: the host emulation of the CUDA runtime, the device intrinsics and
// cublasGemmEx that the kernels of kernels/*.cu need (tests/emu/README.md).
//
// Execution: a launch checks its configuration like the driver, then runs the blocks one
// after another. Each CUDA thread of a block is a fiber on one OS thread (a small
// x86-64 context switch below; ucontext elsewhere); a fiber
// runs until it reaches __syncthreads, __syncwarp or a shuffle, or returns. A barrier opens
// when every thread of the block (warp) that has not returned waits at it; threads that
// returned count as dropped from both. When no thread can run and some still wait, the
// threads wait at different barriers: reported as a deadlock (fatal).
//
// Memory: cudaMalloc is the host heap (256-byte aligned, each allocation recorded, so copies,
// memsets and cuBLAS operands are checked to lie inside one); dynamic shared memory is a heap
// buffer of exactly the launch's size, refilled with 0xff bytes (NaN in fp32 and bf16) before
// every block, so AddressSanitizer catches a kernel reading past what the launch asked for.
//
// Streams: the legacy default stream (0) runs everything at the call; a created stream queues
// its copies and memsets and runs them only when something waits for them, so a missing
// event wait shows up as stale data (see "streams and events" below).
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "cublas_v2.h"
#include "cuda_bf16.h"
#include "cuda_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
// Fibers and fake stacks do not mix; leaks are the CPU library's business, not this test's.
extern "C" const char *__asan_default_options() {
    return "detect_stack_use_after_return=0:detect_leaks=0";
}
#else
#define EMU_ASAN 0
#endif

#if defined(__x86_64__)
// emu_ctx_switch(save, load): saves the callee-saved registers and the FP control words on
// the current stack, stores its pointer to *save, switches to the stack `load` and restores
// from it. (glibc's swapcontext makes a signal-mask system call per switch, and ASan's
// interceptor clears the whole stack's shadow on each one: far too slow for millions.)
extern "C" void emu_ctx_switch(void **save, void *load);
extern "C" void emu_ctx_start(void);
asm(R"(
    .text
    .globl emu_ctx_switch
    .type emu_ctx_switch, @function
emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_ctx_switch, .-emu_ctx_switch
    .globl emu_ctx_start
    .type emu_ctx_start, @function
emu_ctx_start:
    callq *%r12
    ud2
    .size emu_ctx_start, .-emu_ctx_start
    .section .note.GNU-stack,"",@progbits
    .text
)");
#endif

namespace emu {
thread_state *cur;
uint3 block_idx;
dim3 block_dim, grid_dim;
}  // namespace emu

namespace {

constexpr size_t kSmemOptinMax = 227 * 1024;  // sm_90: 232448 bytes per block
constexpr size_t kSmemDefault = 48 * 1024;    // without the opt-in attribute
constexpr size_t kTotalMem = 80ull << 30;
#if EMU_ASAN
constexpr size_t kStack = 512 * 1024;
#else
constexpr size_t kStack = 128 * 1024;
#endif

std::mutex api_mutex;  // the runtime API may be called from OpenMP threads
cudaError_t last_error = cudaSuccess;
int errors = 0;  // kernel and launch errors: the process exits non-zero

void set_error(cudaError_t e) {
    if (last_error == cudaSuccess) last_error = e;
}

// ---- fibers ---------------------------------------------------------------------------------

enum state_t { READY, AT_BLOCK, AT_WARP, DONE };

struct fiber {
    emu::thread_state ts;
#if defined(__x86_64__)
    void *sp = nullptr;  // saved stack pointer while switched out
#else
    ucontext_t ctx;
#endif
    char *stack = nullptr;  // kStack bytes above a guard page
    state_t state = READY;
    unsigned warp_mask = 0;  // the mask of the __syncwarp it waits at
    void *fake = nullptr;    // ASan's fake stack while switched out
};

std::vector<fiber *> fibers;
#if defined(__x86_64__)
void *sched_sp;
#else
ucontext_t sched_ctx;
#endif
const void *sched_stack_bottom;
size_t sched_stack_size;
fiber *running;

// The launch being run.
const char *kname = "?";
void (*kbody)(void *);
void *kctx;
unsigned char *dyn_smem;
size_t dyn_smem_bytes;
int nthreads, nwarps;
bool reverse_order;  // EMU_REVERSE=1: run the threads of a block from the last one down

// Warp exchange slots, double-buffered by the parity of each lane's shuffle count.
struct warp_slots {
    uint64_t v[2][32];
    unsigned gen[2][32];  // shuffle number each lane wrote (1-based)
};
std::vector<warp_slots> slots;
std::vector<unsigned> shfl_count;  // per thread

[[noreturn]] void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "EMU FATAL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stdout);
    fflush(stderr);
    _exit(3);
}

void exit_report() {
    if (errors) {
        fprintf(stderr, "EMU: %d emulation error(s) reported above: failing the run\n", errors);
        fflush(stdout);
        fflush(stderr);
        _exit(2);
    }
}

void switch_to_scheduler(fiber *f, bool final) {
#if EMU_ASAN
    __sanitizer_start_switch_fiber(final ? nullptr : &f->fake, sched_stack_bottom,
                                   sched_stack_size);
#endif
    (void)final;
#if defined(__x86_64__)
    emu_ctx_switch(&f->sp, sched_sp);
#else
    swapcontext(&f->ctx, &sched_ctx);
#endif
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake, &sched_stack_bottom, &sched_stack_size);
#endif
}

void fiber_entry() {
    fiber *f = running;
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &sched_stack_bottom, &sched_stack_size);
#endif
    kbody(kctx);
    f->state = DONE;
    switch_to_scheduler(f, true);
    fatal("a finished fiber was resumed");
}

__attribute__((noinline)) void run_fiber(fiber *f) {
    running = f;
    emu::cur = &f->ts;
#if EMU_ASAN
    __sanitizer_start_switch_fiber(&f->fake, f->stack, kStack);
#endif
#if defined(__x86_64__)
    emu_ctx_switch(&sched_sp, f->sp);
#else
    swapcontext(&sched_ctx, &f->ctx);
#endif
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake, nullptr, nullptr);
#endif
    emu::cur = nullptr;
    running = nullptr;
}

fiber *get_fiber(int i) {
    while ((int)fibers.size() <= i) {
        fiber *f = new fiber();
        long page = sysconf(_SC_PAGESIZE);
        char *m = (char *)mmap(nullptr, kStack + page, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) fatal("mmap of a fiber stack failed");
        mprotect(m, page, PROT_NONE);  // guard page: a stack overflow faults
        f->stack = m + page;
        fibers.push_back(f);
    }
    return fibers[i];
}

std::string where() {
    char buf[256];
    if (emu::cur)
        snprintf(buf, sizeof buf, "kernel %s block (%u,%u,%u) thread (%u,%u,%u)", kname,
                 emu::block_idx.x, emu::block_idx.y, emu::block_idx.z, emu::cur->idx.x,
                 emu::cur->idx.y, emu::cur->idx.z);
    else
        snprintf(buf, sizeof buf, "kernel %s block (%u,%u,%u)", kname, emu::block_idx.x,
                 emu::block_idx.y, emu::block_idx.z);
    return buf;
}

// Every live lane of each warp made the same number of wmma calls (wmma is warp-wide).
void check_wmma_convergence(bool all) {
    for (int w = 0; w < nwarps; w++) {
        long ref = -1;
        for (int t = w * 32; t < nthreads && t < (w + 1) * 32; t++) {
            fiber *f = fibers[t];
            if (!all && f->state == DONE) continue;
            if (ref < 0) ref = f->ts.wmma_ops;
            else if ((long)f->ts.wmma_ops != ref) {
                errors++;
                fprintf(stderr,
                        "EMU ERROR: %s: lanes of warp %d made different numbers of wmma calls "
                        "(%ld vs %u at thread %d): wmma must be called by the whole warp\n",
                        where().c_str(), w, ref, f->ts.wmma_ops, t);
                return;
            }
        }
    }
}

void run_block() {
    int live = nthreads;
    std::vector<int> warp_live(nwarps, 0);
    for (int t = 0; t < nthreads; t++) {
        fiber *f = fibers[t];
        f->state = READY;
        f->ts.wmma_ops = 0;
        shfl_count[t] = 0;
        warp_live[t / 32]++;
        // (no unpoisoning of the stack: every kernel frame returned normally, and fiber_entry
        // has no instrumented locals)
#if defined(__x86_64__)
        // The frame emu_ctx_switch pops: mxcsr/x87 control word, r15..rbp, then the return
        // address emu_ctx_start, which calls fiber_entry with a 16-byte aligned stack.
        uint64_t *top = (uint64_t *)(((uintptr_t)f->stack + kStack) & ~(uintptr_t)15);
        uint64_t *sp = top - 10;
        sp[0] = 0x1f80 | (uint64_t)0x037f << 32;  // mxcsr, fcw: the defaults
        for (int r = 1; r <= 6; r++) sp[r] = 0;   // r15, r14, r13, r12, rbx, rbp
        sp[4] = (uint64_t)(uintptr_t)&fiber_entry; // r12: the function emu_ctx_start calls
        sp[7] = (uint64_t)(uintptr_t)&emu_ctx_start;
        f->sp = sp;
#else
        getcontext(&f->ctx);
        f->ctx.uc_stack.ss_sp = f->stack;
        f->ctx.uc_stack.ss_size = kStack;
        f->ctx.uc_link = nullptr;
        makecontext(&f->ctx, fiber_entry, 0);
#endif
    }
    for (auto &s : slots) memset(&s, 0, sizeof s);
    if (dyn_smem_bytes) memset(dyn_smem, 0xff, dyn_smem_bytes);
    while (live > 0) {
        bool ran = false;
        for (int k = 0; k < nthreads; k++) {
            int t = reverse_order ? nthreads - 1 - k : k;
            fiber *f = fibers[t];
            if (f->state != READY) continue;
            run_fiber(f);
            ran = true;
            if (f->state == DONE) {
                live--;
                warp_live[t / 32]--;
            }
        }
        // Open the barriers everyone still running waits at.
        int at_block = 0;
        bool opened = false;
        for (int w = 0; w < nwarps; w++) {
            int at_warp = 0;
            for (int t = w * 32; t < nthreads && t < (w + 1) * 32; t++) {
                at_warp += fibers[t]->state == AT_WARP;
                at_block += fibers[t]->state == AT_BLOCK;
            }
            if (at_warp && at_warp == warp_live[w]) {
                for (int t = w * 32; t < nthreads && t < (w + 1) * 32; t++)
                    if (fibers[t]->state == AT_WARP) fibers[t]->state = READY;
                opened = true;
            }
        }
        if (at_block && at_block == live) {
            check_wmma_convergence(false);
            for (int t = 0; t < nthreads; t++)
                if (fibers[t]->state == AT_BLOCK) fibers[t]->state = READY;
            opened = true;
        }
        if (live > 0 && !ran && !opened) {
            std::string w = where();
            fprintf(stderr, "EMU FATAL: %s: deadlock: %d threads wait, some at __syncthreads, "
                            "some at __syncwarp/shuffles of warps whose other lanes wait "
                            "elsewhere or returned:\n", w.c_str(), live);
            for (int t = 0; t < nthreads; t++)
                if (fibers[t]->state != DONE)
                    fprintf(stderr, "  thread %d: %s\n", t,
                            fibers[t]->state == AT_BLOCK ? "__syncthreads" : "__syncwarp/shfl");
            fatal("deadlock in kernel %s", kname);
        }
    }
    check_wmma_convergence(true);
}

std::map<const void *, int> func_smem_attr;  // cudaFuncAttributeMaxDynamicSharedMemorySize

// ---- device memory --------------------------------------------------------------------------

std::map<uintptr_t, size_t> allocs;       // cudaMalloc: start -> bytes
std::map<uintptr_t, size_t> host_allocs;  // cudaMallocHost (host memory for every check)
size_t alloc_bytes;

// Whether [p, p + n) lies inside one allocation of m.
bool inside(const std::map<uintptr_t, size_t> &m, const void *p, size_t n) {
    uintptr_t a = (uintptr_t)p;
    auto it = m.upper_bound(a);
    if (it == m.begin()) return false;
    --it;
    return a >= it->first && a + n <= it->first + it->second;
}
bool in_device(const void *p, size_t n) { return inside(allocs, p, n); }
bool touches_device(const void *p, size_t n) {
    uintptr_t a = (uintptr_t)p;
    auto it = allocs.upper_bound(a + (n ? n - 1 : 0));
    if (it == allocs.begin()) return false;
    --it;
    return it->first + it->second > a;
}

cudaError_t api_error(cudaError_t e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
cudaError_t api_error(cudaError_t e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "EMU: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    set_error(e);
    return e;
}

// cudaMalloc and cudaMallocHost memory: 256-byte aligned, filled with 0xff bytes (fresh memory
// is garbage: NaN in fp32 and bf16), the rounding poisoned under ASan (reading past `bytes` is
// an error).
void *heap_alloc(size_t bytes) {
    void *p = aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (!p) return nullptr;
#if EMU_ASAN
    __asan_poison_memory_region((char *)p + bytes, (bytes + 255) / 256 * 256 - bytes);
#endif
    memset(p, 0xff, bytes);
    return p;
}
void heap_free(void *p, size_t bytes) {
#if EMU_ASAN
    __asan_unpoison_memory_region((char *)p + bytes, (bytes + 255) / 256 * 256 - bytes);
#endif
    free(p);
}

// ---- streams and events -------------------------------------------------------------------
//
// The legacy default stream (0) is immediate: its copies, memsets, launches and GEMMs run at
// the call. A created stream is a FIFO of deferred copies, memsets and event waits, validated
// at the call and run (reading their source then) only when something needs them: a
// synchronisation, an event wait, a launch or GEMM on that stream, or, for a stream created
// without cudaStreamNonBlocking, any work on the default stream (CUDA's implicit
// synchronisation of the legacy stream). Running deferred work earlier than the device might
// is always a legal schedule; running it as late as possible is what makes a missing wait
// visible. Every function here expects api_mutex held and calls no API function, so a flush
// from inside an API call cannot deadlock.

struct stream_op {
    enum { COPY, SET, WAIT } kind;
    void *dst;         // COPY, SET
    const void *src;   // COPY
    size_t bytes;      // COPY, SET
    int value;         // SET
    uint64_t stream;   // WAIT: the stream (an id) that must have run up to `pos` first
    uint64_t pos;
};

}  // namespace

struct CUstream_st {
    uint64_t id;  // events and waits name streams by id: a destroyed one is complete
    bool nonblocking;
    uint64_t done;  // operations run so far; done + queue.size() is the position of the end
    std::deque<stream_op> queue;
};

// An event is its stream's position when last recorded: complete once the stream ran that
// far. Never recorded, recorded on the default stream, or its stream destroyed: complete.
struct CUevent_st {
    uint64_t stream;  // 0: complete
    uint64_t pos;
};

namespace {

std::map<uint64_t, CUstream_st *> streams;  // by id, in creation order
uint64_t last_stream_id;
std::set<CUevent_st *> events;

uint64_t end_pos(const CUstream_st *s) { return s->done + s->queue.size(); }

CUstream_st *stream_by_id(uint64_t id) {
    auto it = streams.find(id);
    return it == streams.end() ? nullptr : it->second;
}

// A created stream handle (by address: a destroyed one must not be read).
bool live_stream(cudaStream_t s) {
    for (auto &kv : streams)
        if (kv.second == s) return true;
    return false;
}

cudaError_t bad_stream(const char *api, cudaStream_t s) {
    return api_error(cudaErrorInvalidResourceHandle,
                     "%s: stream %p was not created by cudaStreamCreate* or was destroyed", api,
                     (void *)s);
}
cudaError_t bad_event(const char *api, cudaEvent_t e) {
    return api_error(cudaErrorInvalidResourceHandle,
                     "%s: event %p was not created by cudaEventCreate* or was destroyed", api,
                     (void *)e);
}

void flush(CUstream_st *s, uint64_t pos);

// Runs s's next deferred operation. A WAIT only names positions recorded before it was
// queued, so the flush it makes never comes back to s's unfinished part.
void step(CUstream_st *s) {
    stream_op op = s->queue.front();
    s->queue.pop_front();
    switch (op.kind) {
    case stream_op::COPY: memmove(op.dst, op.src, op.bytes); break;
    case stream_op::SET: memset(op.dst, op.value, op.bytes); break;
    case stream_op::WAIT:
        if (CUstream_st *w = stream_by_id(op.stream)) flush(w, op.pos);
        break;
    }
    s->done++;
}

// Runs s's deferred work up to position pos.
void flush(CUstream_st *s, uint64_t pos) {
    while (s->done < pos) step(s);
}

bool event_done(const CUevent_st *e) {
    CUstream_st *s = stream_by_id(e->stream);
    return !s || s->done >= e->pos;
}

void flush_event(const CUevent_st *e) {
    if (CUstream_st *s = stream_by_id(e->stream)) flush(s, e->pos);
}

void flush_all() {
    for (auto &kv : streams) flush(kv.second, end_pos(kv.second));
}

// Before work on stream s runs at the call: on the default stream, the blocking streams'
// deferred work; on a created stream, its own queue.
void before_immediate(cudaStream_t s) {
    if (s) {
        flush(s, end_pos(s));
        return;
    }
    for (auto &kv : streams)
        if (!kv.second->nonblocking) flush(kv.second, end_pos(kv.second));
}

}  // namespace

// ---- device intrinsics ------------------------------------------------------------------------

namespace emu {

static fiber *self() {
    if (!running) fatal("a device function (__syncthreads, shuffle...) was called outside a kernel");
    return running;
}

void syncthreads() {
    fiber *f = self();
    f->state = AT_BLOCK;
    switch_to_scheduler(f, false);
}

void syncwarp(unsigned mask) {
    fiber *f = self();
    int w = f->ts.warp;
    unsigned present = 0;
    for (int t = w * 32; t < nthreads && t < (w + 1) * 32; t++)
        if (fibers[t]->state != DONE) present |= 1u << (t % 32);
    if (!(mask >> f->ts.lane & 1u)) kernel_error("__syncwarp mask 0x%08x excludes the calling lane", mask);
    if ((mask & present) != mask)
        kernel_error("__syncwarp/shuffle mask 0x%08x names lanes that do not exist or returned "
                     "(present 0x%08x)", mask, present);
    f->state = AT_WARP;
    f->warp_mask = mask;
    switch_to_scheduler(f, false);
}

void shfl(unsigned mask, void *v, unsigned bytes, int mode, int arg, int width) {
    fiber *f = self();
    int t = f->ts.linear, lane = f->ts.lane;
    if (bytes > 8) fatal("shuffle of %u bytes", bytes);
    if (width < 1 || width > 32 || (width & (width - 1)))
        kernel_error("shuffle width %d is not a power of two <= 32", width);
    unsigned n = ++shfl_count[t], buf = n & 1;
    warp_slots &s = slots[f->ts.warp];
    memcpy(&s.v[buf][lane], v, bytes);
    s.gen[buf][lane] = n;
    syncwarp(mask);
    int base = lane & ~(width - 1), src = lane;
    switch (mode) {
    case 0: src = base + (arg & (width - 1)); break;
    case 1: src = lane - arg >= base ? lane - arg : lane; break;
    case 2: src = lane + arg < base + width ? lane + arg : lane; break;
    case 3: src = (lane ^ arg) < base + width ? lane ^ arg : lane; break;
    }
    if (s.gen[buf][src] != n) {
        kernel_error("shuffle #%u reads lane %d, which did not take part", n, src);
        return;
    }
    memcpy(v, &s.v[buf][src], bytes);
}

unsigned char *dynamic_smem() { return dyn_smem; }

void kernel_error(const char *fmt, ...) {
    errors++;
    if (errors > 20) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "EMU ERROR: %s: ", where().c_str());
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

void launch(const char *name0, const char *file, int line, const void *key, dim3 grid, dim3 block, size_t smem,
            cudaStream_t stream, void (*body)(void *), void *ctx) {
    static char name_buf[512];
    snprintf(name_buf, sizeof name_buf, "%s (launched at %s:%d)", name0, file, line);
    const char *name = name_buf;
    static bool init = false;
    if (!init) {
        init = true;
        atexit(exit_report);
        const char *r = getenv("EMU_REVERSE");
        reverse_order = r && *r == '1';
    }
    if (running) fatal("kernel %s launched from device code", name);
    std::lock_guard<std::mutex> lock(api_mutex);
    kname = name;
    unsigned long long nt = (unsigned long long)block.x * block.y * block.z;
    const char *bad = nullptr;
    char msg[200];
    size_t limit = kSmemDefault;
    auto it = func_smem_attr.find(key);
    if (it != func_smem_attr.end()) limit = (size_t)it->second;
    if (!block.x || !block.y || !block.z || block.x > 1024 || block.y > 1024 || block.z > 64 ||
        nt > 1024) {
        snprintf(msg, sizeof msg, "block (%u,%u,%u): %llu threads (at most 1024, z <= 64, none 0)",
                 block.x, block.y, block.z, nt);
        bad = msg;
    } else if (!grid.x || !grid.y || !grid.z || grid.x > 0x7fffffffu || grid.y > 65535 ||
               grid.z > 65535) {
        snprintf(msg, sizeof msg, "grid (%u,%u,%u) (x in 1..2^31-1, y, z in 1..65535)", grid.x,
                 grid.y, grid.z);
        bad = msg;
    } else if (smem > limit || smem > kSmemOptinMax) {
        snprintf(msg, sizeof msg,
                 "%zu bytes of dynamic shared memory, above the kernel's limit of %zu "
                 "(cudaFuncAttributeMaxDynamicSharedMemorySize; 48 KB without it, 227 KB at most)",
                 smem, limit);
        bad = msg;
    }
    if (bad) {
        errors++;
        fprintf(stderr, "EMU ERROR: launch of %s: invalid configuration: %s\n", name, bad);
        set_error(cudaErrorInvalidConfiguration);
        return;
    }
    if (stream && !live_stream(stream)) {
        errors++;
        fprintf(stderr, "EMU ERROR: launch of %s: stream %p was not created or was destroyed\n",
                name, (void *)stream);
        set_error(cudaErrorInvalidResourceHandle);
        return;
    }
    before_immediate(stream);
    nthreads = (int)nt;
    nwarps = (nthreads + 31) / 32;
    get_fiber(nthreads - 1);
    if ((int)slots.size() < nwarps) slots.resize(nwarps);
    if ((int)shfl_count.size() < nthreads) shfl_count.resize(nthreads);
    for (int t = 0; t < nthreads; t++) {
        emu::thread_state &ts = fibers[t]->ts;
        ts.idx = {t % block.x, t / block.x % block.y, t / (block.x * block.y)};
        ts.linear = t;
        ts.lane = t % 32;
        ts.warp = t / 32;
    }
    dyn_smem_bytes = smem;
    dyn_smem = smem ? (unsigned char *)aligned_alloc(128, (smem + 127) / 128 * 128) : nullptr;
    // aligned_alloc needs a multiple of the alignment; ASan still checks the exact size below
#if EMU_ASAN
    if (smem) __asan_poison_memory_region(dyn_smem + smem, (smem + 127) / 128 * 128 - smem);
#endif
    kbody = body;
    kctx = ctx;
    block_dim = block;
    grid_dim = grid;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                block_idx = {x, y, z};
                run_block();
            }
#if EMU_ASAN
    if (smem) __asan_unpoison_memory_region(dyn_smem + smem, (smem + 127) / 128 * 128 - smem);
#endif
    free(dyn_smem);
    dyn_smem = nullptr;
    kname = "?";
}

}  // namespace emu

// ---- runtime API ------------------------------------------------------------------------------

extern "C" {

cudaError_t cudaGetDeviceCount(int *count) {
    *count = 1;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *device) {
    *device = 0;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
    return device == 0 ? cudaSuccess
                       : api_error(cudaErrorInvalidDevice, "cudaSetDevice(%d): one device", device);
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device) {
    if (device != 0) return api_error(cudaErrorInvalidDevice, "cudaGetDeviceProperties(%d)", device);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CPU emulation");
    p->totalGlobalMem = kTotalMem;
    p->sharedMemPerBlock = kSmemDefault;
    p->sharedMemPerBlockOptin = kSmemOptinMax;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff;
    p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->multiProcessorCount = 132;
    p->major = 9;
    p->minor = 0;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
    if (device != 0) return api_error(cudaErrorInvalidDevice, "cudaDeviceGetAttribute device %d", device);
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)kSmemDefault; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = 132; break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)kSmemOptinMax; break;
    default: return api_error(cudaErrorInvalidValue, "cudaDeviceGetAttribute(%d) not emulated", (int)attr);
    }
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
    std::lock_guard<std::mutex> lock(api_mutex);
    flush_all();
    return last_error;
}
cudaError_t cudaGetLastError(void) {
    std::lock_guard<std::mutex> lock(api_mutex);
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return last_error; }
const char *cudaGetErrorString(cudaError_t err) {
    switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    }
    return "unknown error";
}

cudaError_t cudaMalloc(void **ptr, size_t bytes) {
    std::lock_guard<std::mutex> lock(api_mutex);
    *ptr = nullptr;
    if (!bytes) return cudaSuccess;  // like the driver: a null pointer, success
    if (alloc_bytes + bytes > kTotalMem) return cudaErrorMemoryAllocation;
    void *p = heap_alloc(bytes);
    if (!p) return cudaErrorMemoryAllocation;
    allocs[(uintptr_t)p] = bytes;
    alloc_bytes += bytes;
    *ptr = p;
    return cudaSuccess;
}
cudaError_t cudaFree(void *ptr) {
    std::lock_guard<std::mutex> lock(api_mutex);
    if (!ptr) return cudaSuccess;
    auto it = allocs.find((uintptr_t)ptr);
    if (it == allocs.end())
        return api_error(cudaErrorInvalidValue, "cudaFree(%p): not a cudaMalloc'd pointer", ptr);
    flush_all();  // cudaFree waits for the device: queued work may still use the memory
    alloc_bytes -= it->second;
    heap_free(ptr, it->second);
    allocs.erase(it);
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **ptr, size_t bytes) {
    std::lock_guard<std::mutex> lock(api_mutex);
    *ptr = nullptr;
    if (!bytes) return cudaSuccess;
    void *p = heap_alloc(bytes);
    if (!p) return cudaErrorMemoryAllocation;
    host_allocs[(uintptr_t)p] = bytes;
    *ptr = p;
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *ptr) {
    std::lock_guard<std::mutex> lock(api_mutex);
    if (!ptr) return cudaSuccess;
    auto it = host_allocs.find((uintptr_t)ptr);
    if (it == host_allocs.end())
        return api_error(cudaErrorInvalidValue, "cudaFreeHost(%p): not a cudaMallocHost'd pointer",
                         ptr);
    flush_all();  // like cudaFree: queued copies may still read or write it
    heap_free(ptr, it->second);
    host_allocs.erase(it);
    return cudaSuccess;
}

// A memset on `stream`: run at the call on the default stream, queued on a created one.
static cudaError_t do_memset(const char *api, void *ptr, int value, size_t bytes,
                             cudaStream_t stream) {
    if (stream && !live_stream(stream)) return bad_stream(api, stream);
    if (!bytes) return cudaSuccess;
    if (!in_device(ptr, bytes))
        return api_error(cudaErrorInvalidValue, "%s(%p, %zu bytes) outside any allocation", api,
                         ptr, bytes);
    if (stream) {
        stream->queue.push_back({stream_op::SET, ptr, nullptr, bytes, value, 0, 0});
        return cudaSuccess;
    }
    before_immediate(stream);
    memset(ptr, value, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemset(void *ptr, int value, size_t bytes) {
    std::lock_guard<std::mutex> lock(api_mutex);
    return do_memset("cudaMemset", ptr, value, bytes, nullptr);
}
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(api_mutex);
    return do_memset("cudaMemsetAsync", ptr, value, bytes, stream);
}

// A copy on `stream`: run at the call on the default stream, queued on a created one, whose
// host side must be page-locked (from pageable memory CUDA copies synchronously, so
// queueing it would test an overlap that does not exist).
static cudaError_t do_memcpy(const char *api, void *dst, const void *src, size_t bytes,
                             enum cudaMemcpyKind kind, cudaStream_t stream) {
    if (stream && !live_stream(stream)) return bad_stream(api, stream);
    if (!bytes) return cudaSuccess;
    bool dd = kind == cudaMemcpyDeviceToDevice || kind == cudaMemcpyHostToDevice;
    bool sd = kind == cudaMemcpyDeviceToDevice || kind == cudaMemcpyDeviceToHost;
    if (kind == cudaMemcpyDefault) {
        dd = touches_device(dst, bytes);
        sd = touches_device(src, bytes);
    }
    if (dd ? !in_device(dst, bytes) : touches_device(dst, bytes))
        return api_error(cudaErrorInvalidValue, "%s kind %d: destination %p (%zu bytes) %s", api,
                         (int)kind, dst, bytes, dd ? "is not inside one device allocation" : "is device memory");
    if (sd ? !in_device(src, bytes) : touches_device(src, bytes))
        return api_error(cudaErrorInvalidValue, "%s kind %d: source %p (%zu bytes) %s", api,
                         (int)kind, src, bytes, sd ? "is not inside one device allocation" : "is device memory");
    if (stream) {
        const void *pageable = !sd && !inside(host_allocs, src, bytes)   ? src
                               : !dd && !inside(host_allocs, dst, bytes) ? dst
                                                                         : nullptr;
        if (pageable)
            return api_error(cudaErrorInvalidValue,
                             "%s on stream %p: the host %s %p (%zu bytes) is not inside one "
                             "cudaMallocHost allocation: from pageable memory the copy would not "
                             "be asynchronous (the driver stages it before returning); use "
                             "cudaMallocHost",
                             api, (void *)stream, pageable == src ? "source" : "destination",
                             pageable, bytes);
        stream->queue.push_back({stream_op::COPY, dst, src, bytes, 0, 0, 0});
        return cudaSuccess;
    }
    before_immediate(stream);
    memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind) {
    std::lock_guard<std::mutex> lock(api_mutex);
    return do_memcpy("cudaMemcpy", dst, src, bytes, kind, nullptr);
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                            cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(api_mutex);
    return do_memcpy("cudaMemcpyAsync", dst, src, bytes, kind, stream);
}
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    std::lock_guard<std::mutex> lock(api_mutex);
    *total_bytes = kTotalMem;
    *free_bytes = kTotalMem - alloc_bytes;
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags) {
    std::lock_guard<std::mutex> lock(api_mutex);
    if (flags & ~(unsigned)cudaStreamNonBlocking)
        return api_error(cudaErrorInvalidValue, "cudaStreamCreateWithFlags: flags 0x%x", flags);
    CUstream_st *s = new CUstream_st{++last_stream_id, (flags & cudaStreamNonBlocking) != 0, 0, {}};
    streams[s->id] = s;
    *stream = s;
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *stream) {
    return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(api_mutex);
    if (!live_stream(stream)) return bad_stream("cudaStreamDestroy", stream);
    // CUDA finishes a destroyed stream's work; events and waits naming it become complete.
    flush(stream, end_pos(stream));
    streams.erase(stream->id);
    delete stream;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(api_mutex);
    if (stream && !live_stream(stream)) return bad_stream("cudaStreamSynchronize", stream);
    before_immediate(stream);
    return last_error;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags) {
    std::lock_guard<std::mutex> lock(api_mutex);
    if (flags & ~(unsigned)(cudaEventBlockingSync | cudaEventDisableTiming))
        return api_error(cudaErrorInvalidValue, "cudaEventCreateWithFlags: flags 0x%x", flags);
    CUevent_st *e = new CUevent_st{0, 0};
    events.insert(e);
    *event = e;
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *event) {
    return cudaEventCreateWithFlags(event, cudaEventDefault);
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
    std::lock_guard<std::mutex> lock(api_mutex);
    if (!events.erase(event)) return bad_event("cudaEventDestroy", event);
    delete event;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(api_mutex);
    if (!events.count(event)) return bad_event("cudaEventRecord", event);
    if (stream && !live_stream(stream)) return bad_stream("cudaEventRecord", stream);
    if (stream) {
        *event = {stream->id, end_pos(stream)};
    } else {
        before_immediate(stream);
        *event = {0, 0};
    }
    return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
    std::lock_guard<std::mutex> lock(api_mutex);
    if (!events.count(event)) return bad_event("cudaStreamWaitEvent", event);
    if (stream && !live_stream(stream)) return bad_stream("cudaStreamWaitEvent", stream);
    if (flags) return api_error(cudaErrorInvalidValue, "cudaStreamWaitEvent: flags 0x%x", flags);
    if (!stream) {
        before_immediate(stream);
        flush_event(event);
    } else if (!event_done(event) && event->stream != stream->id) {
        // The wait is a queue entry: only stream's later work must come after the event.
        stream->queue.push_back({stream_op::WAIT, nullptr, nullptr, 0, 0, event->stream, event->pos});
    }
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    std::lock_guard<std::mutex> lock(api_mutex);
    if (!events.count(event)) return bad_event("cudaEventSynchronize", event);
    flush_event(event);
    return last_error;
}
// A pending event reports not ready and its stream runs one deferred operation, so the
// caller's not-ready path runs and a polling loop still ends.
cudaError_t cudaEventQuery(cudaEvent_t event) {
    std::lock_guard<std::mutex> lock(api_mutex);
    if (!events.count(event)) return bad_event("cudaEventQuery", event);
    if (event_done(event)) return cudaSuccess;
    step(stream_by_id(event->stream));
    return cudaErrorNotReady;
}
cudaError_t emu_func_set_attribute(const void *func, enum cudaFuncAttribute attr, int value) {
    std::lock_guard<std::mutex> lock(api_mutex);
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value < 0 || (size_t)value > kSmemOptinMax)
            return api_error(cudaErrorInvalidValue,
                             "cudaFuncSetAttribute: %d bytes of dynamic shared memory (at most %zu)",
                             value, kSmemOptinMax);
        func_smem_attr[func] = value;
    }
    return cudaSuccess;
}

// ---- cuBLAS -----------------------------------------------------------------------------------

struct cublasContext {
    cudaStream_t stream;
    cublasMath_t math;
};

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
    *handle = new cublasContext{nullptr, CUBLAS_DEFAULT_MATH};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t stream) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

static float gemm_ld(const void *p, cudaDataType_t t, size_t i) {
    return t == CUDA_R_16BF ? __bfloat162float(((const __nv_bfloat16 *)p)[i]) : ((const float *)p)[i];
}

static cublasStatus_t gemm_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static cublasStatus_t gemm_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "EMU: cublasGemmEx: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return CUBLAS_STATUS_INVALID_VALUE;
}

// Column-major C[m,n] = alpha op(A)[m,k] op(B)[k,n] + beta C, fp32 accumulation in k order.
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha_p, const void *A, cudaDataType_t at,
                            int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta_p,
                            void *C, cudaDataType_t ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (compute != CUBLAS_COMPUTE_32F || at != bt ||
        !((at == CUDA_R_32F && ct == CUDA_R_32F) || (at == CUDA_R_16BF && (ct == CUDA_R_16BF || ct == CUDA_R_32F))))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (ta > CUBLAS_OP_T || tb > CUBLAS_OP_T) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m < 0 || n < 0 || k < 0) return gemm_error("m %d n %d k %d", m, n, k);
    int arows = ta == CUBLAS_OP_N ? m : k, acols = ta == CUBLAS_OP_N ? k : m;
    int brows = tb == CUBLAS_OP_N ? k : n, bcols = tb == CUBLAS_OP_N ? n : k;
    if (lda < (arows > 1 ? arows : 1)) return gemm_error("lda %d < %d rows of A", lda, arows);
    if (ldb < (brows > 1 ? brows : 1)) return gemm_error("ldb %d < %d rows of B", ldb, brows);
    if (ldc < (m > 1 ? m : 1)) return gemm_error("ldc %d < m %d", ldc, m);
    if (!m || !n) return CUBLAS_STATUS_SUCCESS;
    size_t ae = at == CUDA_R_16BF ? 2 : 4, ce = ct == CUDA_R_16BF ? 2 : 4;
    auto extent = [](int rows, int cols, int ld) { return ((size_t)(cols - 1) * ld + rows); };
    {
        std::lock_guard<std::mutex> lock(api_mutex);
        if (h->stream && !live_stream(h->stream))
            return gemm_error("stream %p (cublasSetStream) was not created or was destroyed",
                              (void *)h->stream);
        if (k && !in_device(A, extent(arows, acols, lda) * ae))
            return gemm_error("A %p (%d x %d, lda %d) is not inside one device allocation", A, arows, acols, lda);
        if (k && !in_device(B, extent(brows, bcols, ldb) * ae))
            return gemm_error("B %p (%d x %d, ldb %d) is not inside one device allocation", B, brows, bcols, ldb);
        if (!in_device(C, extent(m, n, ldc) * ce))
            return gemm_error("C %p (%d x %d, ldc %d) is not inside one device allocation", C, m, n, ldc);
        before_immediate(h->stream);
    }
    float alpha = *(const float *)alpha_p, beta = *(const float *)beta_p;
    std::vector<float> a((size_t)m * k), b((size_t)k * n);  // op(A) [m][k], op(B)^T [n][k]
    for (int i = 0; i < m; i++)
        for (int p = 0; p < k; p++)
            a[(size_t)i * k + p] = gemm_ld(A, at, ta == CUBLAS_OP_N ? (size_t)p * lda + i : (size_t)i * lda + p);
    for (int j = 0; j < n; j++)
        for (int p = 0; p < k; p++)
            b[(size_t)j * k + p] = gemm_ld(B, bt, tb == CUBLAS_OP_N ? (size_t)j * ldb + p : (size_t)p * ldb + j);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            const float *ar = &a[(size_t)i * k], *br = &b[(size_t)j * k];
            float s = 0.0f;
            for (int p = 0; p < k; p++) s += ar[p] * br[p];
            size_t c = (size_t)j * ldc + i;
            float v = alpha * s + (beta != 0.0f ? beta * gemm_ld(C, ct, c) : 0.0f);
            if (ct == CUDA_R_16BF)
                ((__nv_bfloat16 *)C)[c] = __float2bfloat16_rn(v);
            else
                ((float *)C)[c] = v;
        }
    return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
