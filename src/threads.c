#include "threads.h"

#include <errno.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void pf_threads_passive_reexec(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    // The resolved path, not /proc/self/exe itself, so that ps and top show the program's name.
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        execv(self, argv);
    }
    fprintf(stderr, "pixelfly: warning: could not restart with OMP_WAIT_POLICY=passive (%s); "
                    "OpenMP threads will spin between parallel regions: set "
                    "OMP_WAIT_POLICY=passive in the environment\n",
            strerror(errno));
}

int pf_threads_pick(int local_ranks, char *msg, size_t msg_len) {
    if (msg_len) msg[0] = 0;
    if (getenv("OMP_NUM_THREADS")) return omp_get_max_threads();
    cpu_set_t mask;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int in_mask = sched_getaffinity(0, sizeof mask, &mask) == 0 ? CPU_COUNT(&mask) : (int)online;
    if (online < 1) online = in_mask;
    if (local_ranks < 1) local_ranks = 1;
    long share = online / local_ranks;
    int n = (int)(in_mask < share ? in_mask : share);
    if (n < 1) n = 1;
    omp_set_num_threads(n);
    if (msg_len)
        snprintf(msg, msg_len,
                 "OMP_NUM_THREADS unset: %d thread%s per rank (%d core%s in this rank's affinity "
                 "mask, %ld online, %d rank%s on this node), OMP_WAIT_POLICY=%s; set "
                 "OMP_NUM_THREADS to choose",
                 n, n == 1 ? "" : "s", in_mask, in_mask == 1 ? "" : "s", online, local_ranks,
                 local_ranks == 1 ? "" : "s",
                 getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "(unset)");
    return n;
}
