// Hebbian updates of shared weights (SPEC.md section 4) without the unfolded patch matrix.
//
// The plain term sum_{b,p} y[b,n,p] * patch(x)[b,p] is exactly the weight gradient of the
// convolution with y as the output gradient, so ATen's (oneDNN on CPU, cuDNN on GPU) weight
// gradient computes it without materialising patches; for a linear layer it is one GEMM y^T x.
// The instar and Oja corrections are w[n] times a per-channel reduction of y (sum y, sum y^2):
// one pass over y, then dw -= w * s in place.
#include "hebbian.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/types.h>

#include <vector>

namespace hebbkern {
namespace {

enum class HebbRule { Hebb, Instar, Oja };

HebbRule parse_hebbian_rule(const std::string& name) {
  if (name == "hebb") return HebbRule::Hebb;
  if (name == "instar") return HebbRule::Instar;
  if (name == "oja") return HebbRule::Oja;
  TORCH_CHECK_VALUE(false, "hebbkern: unknown hebbian rule '", name,
                    "' (expected one of hebb, instar, oja)");
}

void check_common(const at::Tensor& w, const at::Tensor& x, const at::Tensor& y) {
  TORCH_CHECK_TYPE(w.scalar_type() == at::kFloat || w.scalar_type() == at::kDouble,
                   "hebbkern: w must be float32 or float64, got ", w.scalar_type());
  TORCH_CHECK_TYPE(x.scalar_type() == w.scalar_type() && y.scalar_type() == w.scalar_type(),
                   "hebbkern: w, x and y must have one dtype");
  TORCH_CHECK_VALUE(x.device() == w.device() && y.device() == w.device(),
                    "hebbkern: w, x and y must be on one device");
}

// Sum of v[0..n) and of its squares. Several float lanes keep the inner loop vectorisable
// (the compiler may not reorder one scalar accumulator); each row's lanes are then summed in
// double, so the error does not grow with B * H_out * W_out.
template <typename T>
inline void row_sums(const T* v, int64_t n, double& s1, double& s2) {
  constexpr int kLanes = 16;
  T a1[kLanes] = {}, a2[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const T e = v[i + l];
      a1[l] += e;
      a2[l] += e * e;
    }
  }
  for (; i < n; ++i) {
    a1[0] += v[i];
    a2[0] += v[i] * v[i];
  }
  for (int l = 0; l < kLanes; ++l) {
    s1 += a1[l];
    s2 += a2[l];
  }
}

// dw[n, :] -= w[n, :] * s[n], with s[n] = sum over y[b, n, p] (instar) or y^2 (oja); y viewed
// as [B, N, L] (L = 1 for a linear layer), dw and w as [N, K]. In place on dw.
template <typename T>
void apply_correction_cpu(at::Tensor& dw, const at::Tensor& w, const at::Tensor& y3,
                          HebbRule rule) {
  const int64_t B = y3.size(0), N = y3.size(1), L = y3.size(2);
  const int64_t K = w.numel() / N;
  const T* yp = y3.const_data_ptr<T>();
  const T* wp = w.const_data_ptr<T>();
  T* dp = dw.mutable_data_ptr<T>();
  const bool oja = rule == HebbRule::Oja;
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      double s1 = 0.0, s2 = 0.0;
      if (L == 1) {
        // A linear layer: column n of y [B, N] is strided.
        for (int64_t b = 0; b < B; ++b) {
          const double e = yp[b * N + n];
          s1 += e;
          s2 += e * e;
        }
      } else {
        for (int64_t b = 0; b < B; ++b) row_sums(yp + (b * N + n) * L, L, s1, s2);
      }
      const T s = static_cast<T>(oja ? s2 : s1);
      T* d = dp + n * K;
      const T* wn = wp + n * K;
      for (int64_t k = 0; k < K; ++k) d[k] -= s * wn[k];
    }
  });
}

void apply_correction(at::Tensor& dw, const at::Tensor& w, const at::Tensor& y, HebbRule rule) {
  if (rule == HebbRule::Hebb) return;
  const int64_t B = y.size(0), N = y.size(1);
  if (dw.device().is_cpu()) {
    const at::Tensor y3 = y.contiguous().view({B, N, -1});
    const at::Tensor wc = w.contiguous();
    AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "hebbian_correction",
                               [&] { apply_correction_cpu<scalar_t>(dw, wc, y3, rule); });
    return;
  }
  // Other devices (the CUDA build): the same math through ATen reductions.
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < y.dim(); ++d) dims.push_back(d);
  const at::Tensor s = rule == HebbRule::Oja ? y.square().sum(dims) : y.sum(dims);
  std::vector<int64_t> shape(w.dim(), 1);
  shape[0] = N;
  dw.sub_(w * s.view(shape));
}

}  // namespace

at::Tensor hebbian_update_linear(const at::Tensor& w, const at::Tensor& x, const at::Tensor& y,
                                 const std::string& rule_name) {
  const HebbRule rule = parse_hebbian_rule(rule_name);
  check_common(w, x, y);
  TORCH_CHECK_VALUE(w.dim() == 2, "hebbkern: w must be [N, D], got ", w.sizes());
  TORCH_CHECK_VALUE(x.dim() == 2 && x.size(1) == w.size(1) && x.size(0) >= 1,
                    "hebbkern: x must be [B, D] with D = ", w.size(1), ", got ", x.sizes());
  TORCH_CHECK_VALUE(y.dim() == 2 && y.size(0) == x.size(0) && y.size(1) == w.size(0),
                    "hebbkern: y must be [B, N] = [", x.size(0), ", ", w.size(0), "], got ",
                    y.sizes());
  at::Tensor dw = at::mm(y.t(), x).contiguous();
  apply_correction(dw, w, y, rule);
  return dw;
}

at::Tensor hebbian_update_conv2d(const at::Tensor& w, const at::Tensor& x, const at::Tensor& y,
                                 const std::string& rule_name, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t groups) {
  const HebbRule rule = parse_hebbian_rule(rule_name);
  check_common(w, x, y);
  TORCH_CHECK_VALUE(w.dim() == 4, "hebbkern: w must be [C_out, C_in/groups, kh, kw], got ",
                    w.sizes());
  TORCH_CHECK_VALUE(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
                    "hebbkern: stride, padding and dilation must have 2 elements");
  TORCH_CHECK_VALUE(groups >= 1 && w.size(0) % groups == 0,
                    "hebbkern: groups must be >= 1 and divide C_out = ", w.size(0));
  TORCH_CHECK_VALUE(w.numel() > 0, "hebbkern: w must not be empty, got ", w.sizes());
  TORCH_CHECK_VALUE(x.dim() == 4 && x.size(1) == w.size(1) * groups && x.size(0) >= 1,
                    "hebbkern: x must be [B, C_in, H, W] with C_in = ", w.size(1) * groups,
                    ", got ", x.sizes());
  std::vector<int64_t> out{x.size(0), w.size(0)};
  for (int d = 0; d < 2; ++d) {
    TORCH_CHECK_VALUE(stride[d] >= 1 && padding[d] >= 0 && dilation[d] >= 1,
                      "hebbkern: need stride >= 1, padding >= 0, dilation >= 1");
    const int64_t o =
        (x.size(2 + d) + 2 * padding[d] - dilation[d] * (w.size(2 + d) - 1) - 1) / stride[d] + 1;
    TORCH_CHECK_VALUE(o >= 1, "hebbkern: the convolution has no output position");
    out.push_back(o);
  }
  TORCH_CHECK_VALUE(y.sizes() == at::IntArrayRef(out), "hebbkern: y must be ", out, ", got ",
                    y.sizes());
  const std::array<bool, 3> mask{false, true, false};
  const int64_t no_output_padding[2] = {0, 0};
  at::Tensor dw =
      std::get<1>(at::convolution_backward(y, x, w, std::nullopt, stride, padding, dilation,
                                           /*transposed=*/false, no_output_padding, groups, mask))
          .contiguous();
  apply_correction(dw, w, y, rule);
  return dw;
}

}  // namespace hebbkern
