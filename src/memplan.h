// memplan.h: a run's memory plan, computed from the config before anything large is
// allocated, and compared with the memory there is. `pftrain summary` prints it and the
// trainer refuses a plan that does not fit, naming what it needs, what is available and the
// keys that change it.
#ifndef PF_MEMPLAN_H
#define PF_MEMPLAN_H

#include <stdbool.h>
#include <stdio.h>

#include "backend.h"
#include "config.h"
#include "models/model.h"

typedef struct {
    pf_model_memory model;       // at train.batch_size
    double act_per_sample;       // activations of one sample (the model planned at B = 1)
    double loader;               // host: batch buffers of the training and validation loaders
    double staging;              // host: parameters and AdamW moments staged for checkpoints
    double device;               // on the backend's device: params + grads + optim + weights
                                 // + activations
    double host;                 // on the host: model host buffers + loader + staging, and
                                 // the device part too when the device is the host (CPU)
    bool device_is_host;
} pf_mem_plan;

// The plan of config c on backend be. -1 with pf_error() when c describes no valid model.
int pf_mem_plan_compute(const pf_config *c, const pf_backend *be, pf_mem_plan *p);

// Host memory this process may still use, in bytes: the smaller of MemAvailable
// (/proc/meminfo; sysconf's available pages without it) and the cgroup's limit less its
// usage (cgroup v2 memory.max, v1 memory.limit_in_bytes) when there is one. `source` gets
// which of them it was.
double pf_host_mem_available(char *source, size_t len);

// 0 when `local_ranks` copies of the plan fit in host_avail bytes of host memory and one
// in dev_avail bytes of device memory (ignored when the device is the host); else -1 with
// pf_error() naming the figure needed, what is available (host_source says where that
// came from), the largest train.batch_size that would fit and the keys that change it.
int pf_mem_plan_fits(const pf_mem_plan *p, const pf_config *c, int local_ranks,
                     double host_avail, const char *host_source, double dev_avail);

// The same against this machine: the host as above, the device's free memory from the
// backend (device_info: total less used).
int pf_mem_plan_check(const pf_mem_plan *p, const pf_config *c, const pf_backend *be,
                      int local_ranks);

// Lines for `pftrain summary`.
void pf_mem_plan_print(const pf_mem_plan *p, const pf_config *c, const pf_backend *be,
                       FILE *f);

#endif
