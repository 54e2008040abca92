// Python binding for the upfirdn2d kernels (cuda_ops/upfirdn2d.cu). Only pybind11 and plain integers cross
// the boundary (tensor checks, output allocation, device and stream selection happen in
// cuda_ops/_cuda_autograd.py), which keeps the build short.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>

#include "common.cuh"

namespace {

// out[n, c, oy, ox] = sum_k f[ky, kx] * buffer[oy*downy + ky, ox*downx + kx], buffer = x zero-inserted by up and
// padded by (px0, py0) at the start (negative: cropped); f is the correlation filter [fh, fw] (float32).
void upfirdn2d(std::uintptr_t x, std::uintptr_t f, std::uintptr_t out, int64_t N, int64_t C, int64_t H, int64_t W,
               int64_t sxN, int64_t sxC, int64_t sxH, int64_t sxW, int64_t outH, int64_t outW, int64_t soN, int64_t soC,
               int64_t soH, int64_t soW, int upx, int upy, int downx, int downy, int px0, int py0, int fw, int fh,
               int dtype, std::uintptr_t stream) {
  if (x == 0 || f == 0 || out == 0) throw std::invalid_argument("upfirdn2d: null tensor");
  if (upx < 1 || upy < 1 || downx < 1 || downy < 1) throw std::invalid_argument("upfirdn2d: up and down must be >= 1");
  if (fw < 1 || fh < 1 || N < 0 || C < 0 || H < 1 || W < 1 || outH < 0 || outW < 0)
    throw std::invalid_argument("upfirdn2d: bad sizes");
  if (dtype < 0 || dtype > 2) throw std::invalid_argument("upfirdn2d: dtype code must be 0, 1 or 2");
  paperlab::Upfirdn2dParams p;
  p.x = reinterpret_cast<const void*>(x);
  p.f = reinterpret_cast<const float*>(f);
  p.out = reinterpret_cast<void*>(out);
  p.N = N; p.C = C; p.H = H; p.W = W;
  p.sxN = sxN; p.sxC = sxC; p.sxH = sxH; p.sxW = sxW;
  p.outH = outH; p.outW = outW;
  p.soN = soN; p.soC = soC; p.soH = soH; p.soW = soW;
  p.upx = upx; p.upy = upy; p.downx = downx; p.downy = downy;
  p.px0 = px0; p.py0 = py0;
  p.fw = fw; p.fh = fh;
  const bool channels_last = soC == 1 && C > 1;
  p.channelsFastest = channels_last ? 1 : 0;
  int tiled = 0;
  if (!channels_last && fw == 4 && fh == 4) {
    if (upx == 2 && upy == 2 && downx == 1 && downy == 1) tiled = 1;
    if (upx == 1 && upy == 1 && downx == 2 && downy == 2) tiled = 2;
  }
  paperlab::launch_upfirdn2d(p, static_cast<paperlab::DType>(dtype), tiled, reinterpret_cast<void*>(stream));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
  m.def("upfirdn2d", &upfirdn2d, "upsample, pad, FIR-correlate and downsample a batch of images", py::arg("x"),
        py::arg("f"), py::arg("out"), py::arg("N"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("sxN"),
        py::arg("sxC"), py::arg("sxH"), py::arg("sxW"), py::arg("outH"), py::arg("outW"), py::arg("soN"),
        py::arg("soC"), py::arg("soH"), py::arg("soW"), py::arg("upx"), py::arg("upy"), py::arg("downx"),
        py::arg("downy"), py::arg("px0"), py::arg("py0"), py::arg("fw"), py::arg("fh"), py::arg("dtype"),
        py::arg("stream"));
}
