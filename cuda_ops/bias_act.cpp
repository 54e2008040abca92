// Python binding for the bias_act kernel (cuda_ops/bias_act.cu). Only pybind11 and plain integers cross the
// boundary (tensor checks, allocation, device and stream selection happen in cuda_ops/_cuda_autograd.py), so
// this file compiles in seconds instead of the minutes torch/extension.h costs.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>

#include "common.cuh"

namespace {

// mode 0: act(x + b) * gain, clamped. mode 1: g * act'(x + b) * gain (zero where clamped).
// mode 2: g * g2 * act''(x + b) * gain (zero where clamped). Pointers of absent tensors are 0.
void bias_act(std::uintptr_t x, std::uintptr_t b, std::uintptr_t g, std::uintptr_t g2, std::uintptr_t out,
              int64_t numel, int64_t stepB, int64_t sizeB, int mode, int act, double alpha, double gain,
              double clamp, int dtype, std::uintptr_t stream) {
  if (mode < 0 || mode > 2) throw std::invalid_argument("bias_act: mode must be 0, 1 or 2");
  if (act < 1 || act > 9) throw std::invalid_argument("bias_act: activation index must be in 1..9");
  if (dtype < 0 || dtype > 2) throw std::invalid_argument("bias_act: dtype code must be 0 (half), 1 (float), 2 (double)");
  if (x == 0 || out == 0 || (mode >= 1 && g == 0) || (mode == 2 && g2 == 0))
    throw std::invalid_argument("bias_act: missing tensor for this mode");
  if (numel < 0 || stepB < 1 || sizeB < 1) throw std::invalid_argument("bias_act: bad sizes");
  paperlab::BiasActParams p;
  p.x = reinterpret_cast<const void*>(x);
  p.b = reinterpret_cast<const void*>(b);
  p.g = reinterpret_cast<const void*>(g);
  p.g2 = reinterpret_cast<const void*>(g2);
  p.out = reinterpret_cast<void*>(out);
  p.numel = numel;
  p.stepB = stepB;
  p.sizeB = sizeB;
  p.mode = mode;
  p.act = act;
  p.alpha = alpha;
  p.gain = gain;
  p.clamp = clamp;
  paperlab::launch_bias_act(p, static_cast<paperlab::DType>(dtype), reinterpret_cast<void*>(stream));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
  m.def("bias_act", &bias_act, "fused bias + activation + gain + clamp (mode 0) and its derivatives (modes 1, 2)",
        py::arg("x"), py::arg("b"), py::arg("g"), py::arg("g2"), py::arg("out"), py::arg("numel"), py::arg("stepB"),
        py::arg("sizeB"), py::arg("mode"), py::arg("act"), py::arg("alpha"), py::arg("gain"), py::arg("clamp"),
        py::arg("dtype"), py::arg("stream"));
}
