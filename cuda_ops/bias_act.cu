// Fused bias + activation + gain + clamp and its first and second derivatives, one elementwise kernel.
// Written for paperlab from the op's definition (see cuda_ops/_bias_act.py); computes in float for half.
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

__device__ __forceinline__ float exp_(float v) { return expf(v); }
__device__ __forceinline__ double exp_(double v) { return exp(v); }
__device__ __forceinline__ float tanh_(float v) { return tanhf(v); }
__device__ __forceinline__ double tanh_(double v) { return tanh(v); }
__device__ __forceinline__ float log1p_(float v) { return log1pf(v); }
__device__ __forceinline__ double log1p_(double v) { return log1p(v); }

// f(s), f'(s) and f''(s) of activation `act`; the same formulas as the torch functions of the reference.
template <typename A>
__device__ __forceinline__ void activation(int act, A s, A alpha, A& f, A& d1, A& d2) {
  const A one = 1, zero = 0;
  switch (act) {
    case 2:  // relu
      f = s > zero ? s : zero; d1 = s > zero ? one : zero; d2 = zero; break;
    case 3:  // lrelu
      f = s > zero ? s : alpha * s; d1 = s > zero ? one : alpha; d2 = zero; break;
    case 4: {  // tanh
      A t = tanh_(s);
      f = t; d1 = one - t * t; d2 = A(-2) * t * d1; break;
    }
    case 5: {  // sigmoid
      A g = one / (one + exp_(-s));
      f = g; d1 = g * (one - g); d2 = d1 * (one - A(2) * g); break;
    }
    case 6:  // elu (alpha fixed at 1, as NVIDIA's)
      if (s > zero) { f = s; d1 = one; d2 = zero; }
      else { A e = exp_(s); f = e - one; d1 = e; d2 = e; }
      break;
    case 7: {  // selu
      const A scale = A(1.0507009873554804934193349852946), a = A(1.6732632423543772848170429916717);
      if (s > zero) { f = scale * s; d1 = scale; d2 = zero; }
      else { A e = exp_(s); f = scale * a * (e - one); d1 = scale * a * e; d2 = d1; }
      break;
    }
    case 8:  // softplus (beta 1, threshold 20 like torch)
      if (s > A(20)) { f = s; d1 = one; d2 = zero; }
      else { A e = exp_(s); f = log1p_(e); A g = e / (e + one); d1 = g; d2 = g * (one - g); }
      break;
    case 9: {  // swish = s * sigmoid(s)
      A g = one / (one + exp_(-s));
      f = s * g; d1 = g * (one + s * (one - g)); d2 = g * (one - g) * (A(2) + s * (one - A(2) * g)); break;
    }
    default:  // linear
      f = s; d1 = one; d2 = zero; break;
  }
}

template <typename T>
__global__ void bias_act_kernel(BiasActParams p) {
  using A = typename AccType<T>::type;
  const T* x = static_cast<const T*>(p.x);
  const T* b = static_cast<const T*>(p.b);
  const T* g = static_cast<const T*>(p.g);
  const T* g2 = static_cast<const T*>(p.g2);
  T* out = static_cast<T*>(p.out);
  const A alpha = A(p.alpha), gain = A(p.gain), clamp = A(p.clamp);
  const bool clamped = p.clamp >= 0;
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.numel; i += stride) {
    A s = to_acc(x[i]);
    if (b != nullptr) s += to_acc(b[(i / p.stepB) % p.sizeB]);
    A f, d1, d2;
    activation<A>(p.act, s, alpha, f, d1, d2);
    const A y = f * gain;
    // torch.clamp passes the gradient where -clamp <= y <= clamp, zero elsewhere.
    const bool pass = !clamped || (y >= -clamp && y <= clamp);
    A r;
    if (p.mode == 0) {
      r = !clamped ? y : (y > clamp ? clamp : (y < -clamp ? -clamp : y));
    } else if (p.mode == 1) {
      r = pass ? to_acc(g[i]) * d1 * gain : A(0);
    } else {
      r = pass ? to_acc(g[i]) * to_acc(g2[i]) * d2 * gain : A(0);
    }
    store(out, i, r);
  }
}

}  // namespace

void launch_bias_act(const BiasActParams& p, DType dtype, void* stream) {
  if (p.numel == 0) return;
  const int block = 256;
  const int64_t blocks = std::min<int64_t>((p.numel + block - 1) / block, int64_t(1) << 20);
  const dim3 grid(static_cast<unsigned>(blocks));
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case kHalf: bias_act_kernel<__half><<<grid, block, 0, s>>>(p); break;
    case kFloat: bias_act_kernel<float><<<grid, block, 0, s>>>(p); break;
    case kDouble: bias_act_kernel<double><<<grid, block, 0, s>>>(p); break;
    default: throw std::runtime_error("bias_act: unsupported dtype");
  }
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string("bias_act: kernel launch failed: ") + cudaGetErrorString(err));
}

}  // namespace paperlab
