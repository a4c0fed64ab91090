// CPU kernels of plastic_linear: z = x (w + alpha * H) (SPEC.md section 3).
//
// Shared trace H [M, K]: w + alpha * H is one [M, K] matrix, built once, and the products are
// GEMMs. Per-sample trace H [B, M, K]: the shared part x w is one GEMM; the plastic part
// sum_i x[b, i] alpha[i, j] H[b, i, j] is one streaming pass over H per sample, so the per-sample
// matrix w + alpha * H[b] is never built. The backward pass over H runs row-parallel (over i):
// each row of d alpha is summed over the batch by one thread in a fixed order (deterministic, no
// per-sample [B, M, K] buffer), while the same pass writes d H and the plastic part of d x.
#include "../plastic_linear.h"

#include <ATen/Parallel.h>
#include <torch/types.h>

#include <algorithm>

#include "hebbkern/plastic_rules.h"
#include "isa.h"

namespace hebbkern {

// The loops of plastic_linear_kernel.cpp, built once per instruction set.
namespace cpu {
#define HEBBKERN_DECLARE_PLASTIC_LINEAR_T(T)                                                  \
  void plastic_linear_forward(const T* x, const T* A, const T* H, T* z, int64_t M, int64_t K, \
                              int64_t b0, int64_t b1);                                        \
  void plastic_linear_backward(const T* x, const T* g, const T* A, const T* H, T* dx, T* dA,  \
                               T* dH, int64_t B, int64_t M, int64_t K, int64_t i0, int64_t i1);
#define HEBBKERN_DECLARE_PLASTIC_LINEAR(ns) \
  namespace ns {                            \
  HEBBKERN_DECLARE_PLASTIC_LINEAR_T(float)  \
  HEBBKERN_DECLARE_PLASTIC_LINEAR_T(double) \
  }
HEBBKERN_FOR_EACH_CPU_ISA(HEBBKERN_DECLARE_PLASTIC_LINEAR)
}  // namespace cpu

namespace {

// Shapes checked here so that the raw torch.ops are safe to call with any tensors.
void check_args(const at::Tensor& x, const at::Tensor& w, const at::Tensor& alpha,
                const at::Tensor& hebb) {
  TORCH_CHECK_VALUE(x.dim() == 2, "hebbkern::plastic_linear: x must be [B, M], got ", x.sizes());
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
                   "hebbkern::plastic_linear: x must be float32 or float64");
  const int64_t B = x.size(0), M = x.size(1);
  TORCH_CHECK_VALUE(w.dim() == 2 && w.size(0) == M,
                    "hebbkern::plastic_linear: w must be [M, K] with M = x.size(1), got ",
                    w.sizes());
  const int64_t K = w.size(1);
  TORCH_CHECK_VALUE(
      alpha.sizes() == w.sizes() || (alpha.dim() == 1 && alpha.size(0) == K) || alpha.dim() == 0,
      "hebbkern::plastic_linear: alpha must be [M, K], [K] or 0-dim, got ", alpha.sizes());
  TORCH_CHECK_VALUE(
      hebb.sizes() == w.sizes() ||
          (hebb.dim() == 3 && hebb.size(0) == B && hebb.size(1) == M && hebb.size(2) == K),
      "hebbkern::plastic_linear: hebb must be [M, K] or [B, M, K], got ", hebb.sizes());
  for (const at::Tensor* t : {&w, &alpha, &hebb})
    TORCH_CHECK_TYPE(t->scalar_type() == x.scalar_type(),
                     "hebbkern::plastic_linear: all tensors must have the dtype of x");
}

at::Tensor alpha_full(const at::Tensor& alpha, const at::Tensor& w) {
  return alpha.expand(w.sizes()).contiguous();
}

// The loops built for the best instruction set the CPU has (isa.h).
template <typename T>
void run_forward(const T* x, const T* A, const T* H, T* z, int64_t M, int64_t K, int64_t b0,
                 int64_t b1) {
  HEBBKERN_CPU_DISPATCH(cpu::active_isa(), cpu, plastic_linear_forward, x, A, H, z, M, K, b0, b1)
}

template <typename T>
void run_backward(const T* x, const T* g, const T* A, const T* H, T* dx, T* dA, T* dH, int64_t B,
                  int64_t M, int64_t K, int64_t i0, int64_t i1) {
  HEBBKERN_CPU_DISPATCH(cpu::active_isa(), cpu, plastic_linear_backward, x, g, A, H, dx, dA, dH, B,
                        M, K, i0, i1)
}

}  // namespace

at::Tensor plastic_linear_fwd_cpu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& alpha,
                                  const at::Tensor& hebb) {
  check_args(x, w, alpha, hebb);
  if (hebb.dim() == 2) return x.mm(w + alpha * hebb).contiguous();
  const int64_t B = x.size(0), M = x.size(1), K = w.size(1);
  at::Tensor z = x.mm(w).contiguous();  // the shared part, then the plastic part added per sample
  at::Tensor xc = x.contiguous(), A = alpha_full(alpha, w), H = hebb.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "plastic_linear_fwd_cpu", [&] {
    using T = scalar_t;
    const T* xp = xc.data_ptr<T>();
    const T* Ap = A.data_ptr<T>();
    const T* Hp = H.data_ptr<T>();
    T* zp = z.data_ptr<T>();
    at::parallel_for(0, B,
                     std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, M * K)),
                     [&](int64_t b0, int64_t b1) { run_forward<T>(xp, Ap, Hp, zp, M, K, b0, b1); });
  });
  return z;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> plastic_linear_bwd_cpu(
    const at::Tensor& grad_z, const at::Tensor& x, const at::Tensor& w, const at::Tensor& alpha,
    const at::Tensor& hebb) {
  check_args(x, w, alpha, hebb);
  const int64_t B = x.size(0), M = x.size(1), K = w.size(1);
  TORCH_CHECK_VALUE(grad_z.dim() == 2 && grad_z.size(0) == B && grad_z.size(1) == K,
                    "hebbkern::plastic_linear: grad_z must be [B, K], got ", grad_z.sizes());
  TORCH_CHECK_TYPE(grad_z.scalar_type() == x.scalar_type(),
                   "hebbkern::plastic_linear: grad_z must have the dtype of x");
  at::Tensor dw = x.t().mm(grad_z);
  at::Tensor dx, dA, dH;
  if (hebb.dim() == 2) {
    // Contiguous outputs whatever the inputs' strides (the fake kernel promises them).
    dx = grad_z.mm((w + alpha * hebb).t()).contiguous();
    dA = (dw * hebb).contiguous();
    dH = (dw * alpha).contiguous();
  } else {
    dx = grad_z.mm(w.t()).contiguous();
    at::Tensor xc = x.contiguous(), gz = grad_z.contiguous(), A = alpha_full(alpha, w);
    at::Tensor H = hebb.contiguous();
    dA = at::empty({M, K}, x.options());
    dH = at::empty({B, M, K}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "plastic_linear_bwd_cpu", [&] {
      using T = scalar_t;
      const T* xp = xc.data_ptr<T>();
      const T* gp = gz.data_ptr<T>();
      const T* Ap = A.data_ptr<T>();
      const T* Hp = H.data_ptr<T>();
      T* dxp = dx.data_ptr<T>();
      T* dAp = dA.data_ptr<T>();
      T* dHp = dH.data_ptr<T>();
      at::parallel_for(0, M,
                       std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, B * K)),
                       [&](int64_t i0, int64_t i1) {
                         run_backward<T>(xp, gp, Ap, Hp, dxp, dAp, dHp, B, M, K, i0, i1);
                       });
    });
  }
  at::Tensor dalpha = alpha.dim() == 2 ? dA : (alpha.dim() == 1 ? dA.sum(0) : dA.sum());
  return {dx, dw.contiguous(), dalpha.contiguous(), dH};
}

}  // namespace hebbkern
