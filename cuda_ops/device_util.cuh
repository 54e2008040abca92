// Device helpers shared by the CUDA kernels (.cu only: the host bindings never include this file).
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

namespace paperlab {
namespace device {

// Accumulation type: float for half inputs, the input type otherwise.
template <typename T> struct AccType { using type = T; };
template <> struct AccType<__half> { using type = float; };

__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ void store(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }
__device__ __forceinline__ void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store(double* p, int64_t i, double v) { p[i] = v; }

}  // namespace device
}  // namespace paperlab
