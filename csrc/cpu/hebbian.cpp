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

#include <algorithm>
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

// Sum of v[0..n), of its squares, and the count of its nonzeros. Several float lanes keep the
// inner loop vectorisable (the compiler may not reorder one scalar accumulator); each row's lanes
// are then summed in double, so the error does not grow with B * H_out * W_out.
template <typename T>
inline void row_stats(const T* v, int64_t n, double& s1, double& s2, int64_t& nnz) {
  constexpr int kLanes = 16;
  T a1[kLanes] = {}, a2[kLanes] = {};
  int64_t c[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const T e = v[i + l];
      a1[l] += e;
      a2[l] += e * e;
      c[l] += e != T(0);
    }
  }
  for (; i < n; ++i) {
    a1[0] += v[i];
    a2[0] += v[i] * v[i];
    c[0] += v[i] != T(0);
  }
  for (int l = 0; l < kLanes; ++l) {
    s1 += a1[l];
    s2 += a2[l];
    nnz += c[l];
  }
}

// Elements of work below which a loop runs on the calling thread.
constexpr int64_t kGrainElements = 1 << 16;

// Per output channel n of y viewed as [B, N, L] (contiguous): sum y, sum y^2, nonzeros. One pass.
struct ChannelStats {
  std::vector<double> s1, s2;
  int64_t nnz = 0;
};

template <typename T>
ChannelStats channel_stats(const at::Tensor& y3) {
  const int64_t B = y3.size(0), N = y3.size(1), L = y3.size(2);
  const T* yp = y3.const_data_ptr<T>();
  ChannelStats st{std::vector<double>(N), std::vector<double>(N), 0};
  std::vector<int64_t> nnz(N);
  if (L == 1) {
    // A linear layer: rows of y are samples; one serial pass, vectorisable along n.
    for (int64_t b = 0; b < B; ++b) {
      const T* row = yp + b * N;
      for (int64_t n = 0; n < N; ++n) {
        const double e = row[n];
        st.s1[n] += e;
        st.s2[n] += e * e;
        nnz[n] += e != 0.0;
      }
    }
    for (int64_t c : nnz) st.nnz += c;
    return st;
  }
  // Small problems stay on one thread: waking the pool costs more than they do.
  at::parallel_for(0, N, std::max<int64_t>(1, kGrainElements / (B * L)),
                   [&](int64_t n0, int64_t n1) {
                     for (int64_t n = n0; n < n1; ++n) {
                       double s1 = 0.0, s2 = 0.0;
                       int64_t c = 0;
                       for (int64_t b = 0; b < B; ++b)
                         row_stats(yp + (b * N + n) * L, L, s1, s2, c);
                       st.s1[n] = s1;
                       st.s2[n] = s2;
                       nnz[n] = c;
                     }
                   });
  for (int64_t c : nnz) st.nnz += c;
  return st;
}

// dw[n, :] -= w[n, :] * s[n], s = sum y (instar) or sum y^2 (oja). In place on dw [N, K].
template <typename T>
void apply_correction_cpu(at::Tensor& dw, const at::Tensor& w, const ChannelStats& st,
                          HebbRule rule) {
  const int64_t N = w.size(0), K = w.numel() / N;
  const T* wp = w.const_data_ptr<T>();
  T* dp = dw.mutable_data_ptr<T>();
  const std::vector<double>& s = rule == HebbRule::Oja ? st.s2 : st.s1;
  at::parallel_for(0, N, std::max<int64_t>(1, kGrainElements / K), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T sn = static_cast<T>(s[n]);
      T* d = dp + n * K;
      const T* wn = wp + n * K;
      for (int64_t k = 0; k < K; ++k) d[k] -= sn * wn[k];
    }
  });
}

// Other devices (the CUDA build): the correction through ATen reductions.
void apply_correction_aten(at::Tensor& dw, const at::Tensor& w, const at::Tensor& y,
                           HebbRule rule) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < y.dim(); ++d) dims.push_back(d);
  const at::Tensor s = rule == HebbRule::Oja ? y.square().sum(dims) : y.sum(dims);
  std::vector<int64_t> shape(w.dim(), 1);
  shape[0] = w.size(0);
  dw.sub_(w * s.view(shape));
}

// A plastic output with few nonzeros (k-winners-take-all: k of C_out channels per position) makes
// the plain term a sparse sum: each nonzero y[b, n, p] adds y * patch(x, b, p) to dw[n]. That is
// nnz * C_in/groups * kh * kw multiply-adds against B * L * C_out times as many for the dense
// weight gradient, worth it below a density of about 1/16 (a gathered multiply-add costs several
// times a GEMM's). Threads own disjoint filters, so there are no races and no atomics.
constexpr int64_t kSparseDensityInverse = 16;

// x_cl: x in channels-last layout [B, H, W, C_in]; dw_t: the result laid out [N, kh, kw, C/g],
// zeroed. Channels-last makes each (nonzero, kernel tap) one contiguous multiply-add of length
// C_in / groups, which vectorises.
template <typename T>
void sparse_plain_conv(at::Tensor& dw_t, const at::Tensor& x_cl, const at::Tensor& y3, int64_t Ho,
                       int64_t Wo, at::IntArrayRef stride, at::IntArrayRef padding,
                       at::IntArrayRef dilation, int64_t groups) {
  const int64_t B = x_cl.size(0), H = x_cl.size(1), W = x_cl.size(2), C_in = x_cl.size(3);
  const int64_t N = dw_t.size(0), kh = dw_t.size(1), kw = dw_t.size(2), Cg = dw_t.size(3);
  const int64_t L = Ho * Wo, Ng = N / groups, K = Cg * kh * kw;
  const T* xp = x_cl.const_data_ptr<T>();
  const T* yp = y3.const_data_ptr<T>();
  T* dp = dw_t.mutable_data_ptr<T>();
  const int64_t sh = stride[0], sw = stride[1], ph = padding[0], pw = padding[1];
  const int64_t dh = dilation[0], dwd = dilation[1];
  // Samples outermost: one sample of x and the thread's filters stay in cache while every
  // filter's nonzeros of that sample gather from it.
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t n = n0; n < n1; ++n) {
        T* d = dp + n * K;
        const T* yrow = yp + (b * N + n) * L;
        const T* xb = xp + b * H * W * C_in + (n / Ng) * Cg;  // n's group of input channels
        for (int64_t p = 0; p < L; ++p) {
          const T v = yrow[p];
          if (v == T(0)) continue;
          const int64_t h0 = (p / Wo) * sh - ph;
          const int64_t w0 = (p % Wo) * sw - pw;
          for (int64_t i = 0; i < kh; ++i) {
            const int64_t h = h0 + i * dh;
            if (h < 0 || h >= H) continue;
            for (int64_t j = 0; j < kw; ++j) {
              const int64_t ww = w0 + j * dwd;
              if (ww < 0 || ww >= W) continue;
              const T* src = xb + (h * W + ww) * C_in;
              T* dst = d + (i * kw + j) * Cg;
              for (int64_t c = 0; c < Cg; ++c) dst[c] += v * src[c];
            }
          }
        }
      }
    }
  });
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
  if (rule == HebbRule::Hebb) return dw;
  if (!dw.device().is_cpu()) {
    apply_correction_aten(dw, w, y, rule);
    return dw;
  }
  const at::Tensor y3 = y.contiguous().view({y.size(0), y.size(1), 1});
  const at::Tensor wc = w.contiguous();
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "hebbian_update_linear", [&] {
    apply_correction_cpu<scalar_t>(dw, wc, channel_stats<scalar_t>(y3), rule);
  });
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
    // The padded input must hold one dilated kernel (checked before dividing: C++ division
    // truncates a negative span toward zero, which would count one position too many).
    const int64_t span = x.size(2 + d) + 2 * padding[d] - dilation[d] * (w.size(2 + d) - 1) - 1;
    TORCH_CHECK_VALUE(span >= 0, "hebbkern: the convolution has no output position");
    out.push_back(span / stride[d] + 1);
  }
  TORCH_CHECK_VALUE(y.sizes() == at::IntArrayRef(out), "hebbkern: y must be ", out, ", got ",
                    y.sizes());
  const auto dense_plain = [&] {
    const std::array<bool, 3> mask{false, true, false};
    const int64_t no_output_padding[2] = {0, 0};
    return std::get<1>(at::convolution_backward(y, x, w, std::nullopt, stride, padding, dilation,
                                                /*transposed=*/false, no_output_padding, groups,
                                                mask))
        .contiguous();
  };
  if (!w.device().is_cpu()) {
    at::Tensor dw = dense_plain();
    if (rule != HebbRule::Hebb) apply_correction_aten(dw, w, y, rule);
    return dw;
  }
  const at::Tensor y3 = y.contiguous().view({y.size(0), y.size(1), -1});
  at::Tensor dw;
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "hebbian_update_conv2d", [&] {
    const ChannelStats st = channel_stats<scalar_t>(y3);
    if (st.nnz * kSparseDensityInverse <= y3.numel()) {
      at::Tensor dw_t = at::zeros({w.size(0), w.size(2), w.size(3), w.size(1)}, w.options());
      sparse_plain_conv<scalar_t>(dw_t, x.permute({0, 2, 3, 1}).contiguous(), y3, out[2], out[3],
                                  stride, padding, dilation, groups);
      dw = dw_t.permute({0, 3, 1, 2}).contiguous();
    } else {
      dw = dense_plain();
    }
    if (rule != HebbRule::Hebb) apply_correction_cpu<scalar_t>(dw, w.contiguous(), st, rule);
  });
  return dw;
}

}  // namespace hebbkern
