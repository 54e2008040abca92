// Plain parameter structs shared by the host bindings (.cpp, compiled by the host compiler) and the CUDA
// launchers (.cu). Kept free of ATen so the .cu files compile quickly.
#pragma once
#include <cstdint>

namespace paperlab {

// Element types the kernels handle; bfloat16 and everything else take the PyTorch reference path.
enum DType : int { kHalf = 0, kFloat = 1, kDouble = 2 };

struct BiasActParams {
  const void* x;    // input (mode 0) or the saved forward input (modes 1, 2)
  const void* b;    // bias [sizeB] or nullptr
  const void* g;    // incoming gradient (modes 1, 2) or nullptr
  const void* g2;   // the forward's incoming gradient dy (mode 2) or nullptr
  void* out;
  int64_t numel;    // elements, all tensors dense with identical strides
  int64_t stepB;    // stride (in elements) of the bias dimension
  int64_t sizeB;    // bias length (1 when there is no bias)
  int mode;         // 0: forward, 1: g * d act / d s, 2: g * g2 * d2 act / d s2 (s = x + b)
  int act;          // 1 linear, 2 relu, 3 lrelu, 4 tanh, 5 sigmoid, 6 elu, 7 selu, 8 softplus, 9 swish
  double alpha, gain, clamp;  // clamp < 0: no clamping
};

struct Upfirdn2dParams {
  const void* x;
  const float* f;   // correlation filter [fh, fw], gain applied, contiguous
  void* out;
  int64_t N, C, H, W;           // input sizes
  int64_t sxN, sxC, sxH, sxW;   // input strides (elements)
  int64_t outH, outW;
  int64_t soN, soC, soH, soW;   // output strides (elements)
  int upx, upy, downx, downy;
  int px0, py0;                 // leading padding (negative: crop)
  int fw, fh;
  int channelsFastest;          // 1: map consecutive threads to channels (channels_last memory)
};

void launch_bias_act(const BiasActParams& p, DType dtype, void* stream);
// tiled: 0 generic kernel; 1 tiled up-by-2 4x4; 2 tiled down-by-2 4x4 (contiguous NCHW only).
void launch_upfirdn2d(const Upfirdn2dParams& p, DType dtype, int tiled, void* stream);

}  // namespace paperlab
