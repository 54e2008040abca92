// upfirdn2d: zero-insertion upsampling, padding, FIR correlation and subsampling in one pass, computed in
// polyphase form (only the taps that meet real input pixels). Written for paperlab from the op's definition
// (see cuda_ops/_upfirdn2d.py). A generic kernel handles every case; tiled shared-memory kernels handle
// StyleGAN2's hot cases (4x4 filter, up or down by 2, NCHW).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "common.cuh"
#include "device_util.cuh"

namespace paperlab {
namespace {

using device::AccType;
using device::store;
using device::to_acc;

__host__ __device__ __forceinline__ int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
__host__ __device__ __forceinline__ int64_t floor_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

// One thread per output pixel. Output o along an axis reads the upsampled, padded buffer at o*down + k for
// filter tap k; that position holds input pixel (o*down + k - pad0) / up when divisible, else an inserted zero.
template <typename T>
__global__ void upfirdn2d_generic(Upfirdn2dParams p) {
  using A = typename AccType<T>::type;
  const T* x = static_cast<const T*>(p.x);
  T* out = static_cast<T*>(p.out);
  const int64_t total = p.N * p.C * p.outH * p.outW;
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    int64_t n, c, oy, ox, t;
    if (p.channelsFastest) {
      c = i % p.C; t = i / p.C; ox = t % p.outW; t /= p.outW; oy = t % p.outH; n = t / p.outH;
    } else {
      ox = i % p.outW; t = i / p.outW; oy = t % p.outH; t /= p.outH; c = t % p.C; n = t / p.C;
    }
    const T* plane = x + n * p.sxN + c * p.sxC;
    const int64_t jx = ox * p.downx - p.px0;  // buffer position of tap 0, relative to the first input pixel
    const int64_t jy = oy * p.downy - p.py0;
    const int kx0 = static_cast<int>(floor_mod(-jx, p.upx));
    const int ky0 = static_cast<int>(floor_mod(-jy, p.upy));
    A acc = 0;
    for (int ky = ky0; ky < p.fh; ky += p.upy) {
      const int64_t iy = (jy + ky) / p.upy;  // exact division
      if (iy < 0 || iy >= p.H) continue;
      for (int kx = kx0; kx < p.fw; kx += p.upx) {
        const int64_t ix = (jx + kx) / p.upx;
        if (ix < 0 || ix >= p.W) continue;
        acc += A(p.f[ky * p.fw + kx]) * to_acc(plane[iy * p.sxH + ix * p.sxW]);
      }
    }
    store(out, n * p.soN + c * p.soC + oy * p.soH + ox * p.soW, acc);
  }
}

// A block computes a TOH x TOW output tile of one (n, c) plane from an input tile staged in shared memory.
template <typename T, int UP, int DOWN, int TOW, int TOH>
__global__ void upfirdn2d_tiled4(Upfirdn2dParams p) {
  using A = typename AccType<T>::type;
  constexpr int F = 4;
  constexpr int TIW = ((TOW - 1) * DOWN + F - 1) / UP + 2;
  constexpr int TIH = ((TOH - 1) * DOWN + F - 1) / UP + 2;
  __shared__ A sf[F][F];
  __shared__ A sx[TIH][TIW];
  const T* x = static_cast<const T*>(p.x);
  T* out = static_cast<T*>(p.out);
  if (threadIdx.x < F * F) sf[threadIdx.x / F][threadIdx.x % F] = A(p.f[threadIdx.x]);
  const int64_t tilesX = (p.outW + TOW - 1) / TOW;
  const int64_t ox0 = (blockIdx.x % tilesX) * TOW;
  const int64_t oy0 = (blockIdx.x / tilesX) * TOH;
  const int64_t ix0 = floor_div(ox0 * DOWN - p.px0, UP);
  const int64_t iy0 = floor_div(oy0 * DOWN - p.py0, UP);
  for (int64_t plane = blockIdx.y; plane < p.N * p.C; plane += gridDim.y) {
    const int64_t n = plane / p.C, c = plane % p.C;
    const T* src = x + n * p.sxN + c * p.sxC;
    __syncthreads();  // the previous plane's tile is no longer read
    for (int k = threadIdx.x; k < TIH * TIW; k += blockDim.x) {
      const int r = k / TIW, q = k % TIW;
      const int64_t iy = iy0 + r, ix = ix0 + q;
      sx[r][q] = (iy >= 0 && iy < p.H && ix >= 0 && ix < p.W) ? to_acc(src[iy * p.sxH + ix * p.sxW]) : A(0);
    }
    __syncthreads();
    for (int k = threadIdx.x; k < TOH * TOW; k += blockDim.x) {
      const int64_t oy = oy0 + k / TOW, ox = ox0 + k % TOW;
      if (oy >= p.outH || ox >= p.outW) continue;
      const int64_t jx = ox * DOWN - p.px0, jy = oy * DOWN - p.py0;
      const int kx0 = static_cast<int>(floor_mod(-jx, UP)), ky0 = static_cast<int>(floor_mod(-jy, UP));
      A acc = 0;
#pragma unroll
      for (int a = 0; a < F / UP; ++a) {
        const int ky = ky0 + a * UP;
        const int ry = static_cast<int>((jy + ky) / UP - iy0);
#pragma unroll
        for (int bb = 0; bb < F / UP; ++bb) {
          const int kx = kx0 + bb * UP;
          const int rx = static_cast<int>((jx + kx) / UP - ix0);
          acc += sf[ky][kx] * sx[ry][rx];
        }
      }
      store(out, n * p.soN + c * p.soC + oy * p.soH + ox * p.soW, acc);
    }
  }
}

template <typename T>
void launch_typed(const Upfirdn2dParams& p, int tiled, cudaStream_t s) {
  const int64_t planes = p.N * p.C;
  const unsigned gridY = static_cast<unsigned>(std::min<int64_t>(planes, 65535));
  if (tiled == 1) {
    constexpr int TO = 64;
    const int64_t tiles = ((p.outW + TO - 1) / TO) * ((p.outH + TO - 1) / TO);
    upfirdn2d_tiled4<T, 2, 1, TO, TO><<<dim3(static_cast<unsigned>(tiles), gridY), 256, 0, s>>>(p);
  } else if (tiled == 2) {
    constexpr int TO = 32;
    const int64_t tiles = ((p.outW + TO - 1) / TO) * ((p.outH + TO - 1) / TO);
    upfirdn2d_tiled4<T, 1, 2, TO, TO><<<dim3(static_cast<unsigned>(tiles), gridY), 256, 0, s>>>(p);
  } else {
    const int block = 256;
    const int64_t total = planes * p.outH * p.outW;
    const int64_t blocks = std::min<int64_t>((total + block - 1) / block, int64_t(1) << 20);
    upfirdn2d_generic<T><<<static_cast<unsigned>(blocks), block, 0, s>>>(p);
  }
}

}  // namespace

void launch_upfirdn2d(const Upfirdn2dParams& p, DType dtype, int tiled, void* stream) {
  if (p.N * p.C * p.outH * p.outW == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case kHalf: launch_typed<__half>(p, tiled, s); break;
    case kFloat: launch_typed<float>(p, tiled, s); break;
    case kDouble: launch_typed<double>(p, tiled, s); break;
    default: throw std::runtime_error("upfirdn2d: unsupported dtype");
  }
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string("upfirdn2d: kernel launch failed: ") + cudaGetErrorString(err));
}

}  // namespace paperlab
