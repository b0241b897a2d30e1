/*
 * gpu_probe.c - whether the CUDA path can run here (see gpu.h).
 *
 * In a CPU build there is no device by definition. In a CUDA build the
 * runtime is asked; a missing driver or device is an ordinary answer (0),
 * not an error, so that CPU-only machines run the same binary.
 */
#include "kernels/gpu.h"

#ifdef SNARM_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

int gpu_device_count(void)
{
#ifdef SNARM_HAVE_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        /* clear the sticky "no driver" status so later calls start clean */
        (void)cudaGetLastError();
        return 0;
    }
    return n;
#else
    return 0;
#endif
}

int gpu_available(void)
{
    return gpu_device_count() > 0;
}
