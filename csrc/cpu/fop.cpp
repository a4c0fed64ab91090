// Fused CPU FOP step: every parameter of a group in one call (SPEC.md section 5; the oracle is
// hebbkern/reference/fop.py, whose order of operations this file follows).
//
// Per preconditioned parameter, viewed as [a, d] with M [d, d]:
//   pass 1 (read only): S = D_{t-1}^T G_t, with D_{t-1} read from (or, for Adam, recomputed from)
//           the optimiser state and G_t = grad + weight_decay * W formed on the fly;
//   M += hyper_lr * lr * (S + S^T) M, then P = M M^T (d x d, small);
//   pass 2: the base optimiser's state update and direction D_t, and W -= lr * D_t P, row by row.
// The two passes cannot merge: P_t needs the reduction over all rows of G_t before the first row
// moves. For small d (conv kernels: 1, 9, 25, 49) both passes are hand-written loops over rows;
// for large d (linear layers) the two GEMMs go to ATen's BLAS.
//
// Reductions run over fixed blocks of rows summed in block order, so a result never depends on the
// thread count or scheduling: a run resumed from a checkpoint continues bit-identically.
#include "../fop.h"

#include <ATen/Parallel.h>
#include <torch/types.h>

#include <cmath>
#include <vector>

namespace hebbkern {

namespace {

enum class Base { Sgd, Momentum, Adam };

// d above which the [a, d] x [d, d] products go to BLAS instead of the row loops.
constexpr int64_t kSmallD = 64;

template <typename T>
struct Hyper {
  Base base;
  T lr, momentum, beta1, beta2, eps, wd;
  double hyper_lr;
  // Adam's bias corrections at this step (bc1, sqrt(bc2)) and at the previous one.
  T bc1, bc2_sqrt, bc1_prev, bc2_sqrt_prev;
  bool first;  // step 1: no previous direction, the momentum buffer starts as the gradient
};

template <typename T>
struct View {
  T* w;
  const T* g;
  T* b1;         // momentum buffer / exp_avg / previous direction (may be null: plain SGD, no M)
  T* b2;         // exp_avg_sq (Adam only)
  int64_t a, d;  // rows and preconditioned axis; d == 0: no preconditioning
};

template <typename T>
inline T decayed_grad(const View<T>& v, const Hyper<T>& h, int64_t i) {
  return h.wd == T(0) ? v.g[i] : v.g[i] + h.wd * v.w[i];
}

// The direction of the previous step at element i, from the state before this step's update.
template <typename T>
inline T prev_direction(const View<T>& v, const Hyper<T>& h, int64_t i) {
  if (h.base == Base::Adam)
    return (v.b1[i] / h.bc1_prev) / (std::sqrt(v.b2[i]) / h.bc2_sqrt_prev + h.eps);
  return v.b1[i];
}

// Updates the base optimiser's state at element i and returns this step's direction.
template <typename T>
inline T base_update(const View<T>& v, const Hyper<T>& h, bool keep_prev, int64_t i) {
  const T g = decayed_grad(v, h, i);
  switch (h.base) {
    case Base::Adam: {
      const T m = v.b1[i] * h.beta1 + (T(1) - h.beta1) * g;
      const T s = v.b2[i] * h.beta2 + (T(1) - h.beta2) * g * g;
      v.b1[i] = m;
      v.b2[i] = s;
      return (m / h.bc1) / (std::sqrt(s) / h.bc2_sqrt + h.eps);
    }
    case Base::Momentum: {
      const T b = h.first ? g : v.b1[i] * h.momentum + g;
      v.b1[i] = b;
      return b;
    }
    default:
      if (keep_prev) v.b1[i] = g;
      return g;
  }
}

// Rows per reduction block: about 16K elements, so partial sums stay few and blocks stay in L2.
inline int64_t block_rows(int64_t d) { return std::max<int64_t>(1, 16384 / d); }

// S = D_{t-1}^T G_t [d, d], accumulated in double over fixed row blocks.
template <typename T>
std::vector<double> hyper_product_small(const View<T>& v, const Hyper<T>& h) {
  const int64_t d = v.d, rows = block_rows(d);
  const int64_t nblocks = (v.a + rows - 1) / rows;
  std::vector<double> partial(nblocks * d * d, 0.0);
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<double> dp(d), gr(d);
    for (int64_t b = b0; b < b1; ++b) {
      double* acc = partial.data() + b * d * d;
      const int64_t r1 = std::min(v.a, (b + 1) * rows);
      for (int64_t r = b * rows; r < r1; ++r) {
        for (int64_t j = 0; j < d; ++j) {
          dp[j] = prev_direction(v, h, r * d + j);
          gr[j] = decayed_grad(v, h, r * d + j);
        }
        for (int64_t j = 0; j < d; ++j) {
          const double x = dp[j];
          double* row = acc + j * d;
          for (int64_t k = 0; k < d; ++k) row[k] += x * gr[k];
        }
      }
    }
  });
  std::vector<double> S(d * d, 0.0);
  for (int64_t b = 0; b < nblocks; ++b)
    for (int64_t e = 0; e < d * d; ++e) S[e] += partial[b * d * d + e];
  return S;
}

// M += c (S + S^T) M in place, then P = M M^T (both d x d, in double).
template <typename T>
std::vector<double> update_precond_small(T* M, const std::vector<double>* S, double c, int64_t d) {
  std::vector<double> m(M, M + d * d);
  if (S != nullptr) {
    std::vector<double> sym(d * d), upd(d * d, 0.0);
    for (int64_t j = 0; j < d; ++j)
      for (int64_t k = 0; k < d; ++k) sym[j * d + k] = (*S)[j * d + k] + (*S)[k * d + j];
    for (int64_t j = 0; j < d; ++j)
      for (int64_t l = 0; l < d; ++l) {
        const double s = sym[j * d + l];
        for (int64_t k = 0; k < d; ++k) upd[j * d + k] += s * m[l * d + k];
      }
    for (int64_t e = 0; e < d * d; ++e) {
      M[e] = static_cast<T>(m[e] + c * upd[e]);
      m[e] = static_cast<double>(M[e]);  // P from the stored M, as the reference does
    }
  }
  std::vector<double> P(d * d, 0.0);
  for (int64_t j = 0; j < d; ++j)
    for (int64_t k = 0; k < d; ++k) {
      double s = 0;
      for (int64_t l = 0; l < d; ++l) s += m[j * d + l] * m[k * d + l];
      P[j * d + k] = s;
    }
  return P;
}

// Pass 2 for small d: per row, the base update and D_t, then W_row -= lr * D_row P.
template <typename T>
void apply_small(const View<T>& v, const Hyper<T>& h, const std::vector<double>& P_d) {
  const int64_t d = v.d;
  std::vector<T> P(P_d.begin(), P_d.end());
  const bool keep_prev = v.b1 != nullptr;
  at::parallel_for(0, v.a, block_rows(d), [&](int64_t r0, int64_t r1) {
    std::vector<T> dir(d), out(d);
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t j = 0; j < d; ++j) dir[j] = base_update(v, h, keep_prev, r * d + j);
      std::fill(out.begin(), out.end(), T(0));
      for (int64_t j = 0; j < d; ++j) {
        const T x = dir[j];
        const T* prow = P.data() + j * d;
        for (int64_t k = 0; k < d; ++k) out[k] += x * prow[k];
      }
      T* w = v.w + r * d;
      for (int64_t k = 0; k < d; ++k) w[k] -= h.lr * out[k];
    }
  });
}

// A parameter without preconditioning: the base optimiser, element by element.
template <typename T>
void apply_plain(const View<T>& v, const Hyper<T>& h, int64_t n) {
  at::parallel_for(0, n, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) v.w[i] -= h.lr * base_update(v, h, false, i);
  });
}

// Large d: the elementwise passes write [a, d] temporaries and the GEMMs go to BLAS.
template <typename T>
void step_large(const View<T>& v, const Hyper<T>& h, at::Tensor& w2d, at::Tensor& M,
                const at::TensorOptions& opt) {
  const int64_t n = v.a * v.d;
  if (!h.first) {
    at::Tensor Dp = at::empty({v.a, v.d}, opt), G = at::empty({v.a, v.d}, opt);
    T* dp = Dp.data_ptr<T>();
    T* gp = G.data_ptr<T>();
    at::parallel_for(0, n, 16384, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        dp[i] = prev_direction(v, h, i);
        gp[i] = decayed_grad(v, h, i);
      }
    });
    at::Tensor S = at::mm(Dp.t(), G);
    M.add_(at::mm(S + S.t(), M), h.hyper_lr * static_cast<double>(h.lr));
  }
  at::Tensor P = at::mm(M, M.t());
  at::Tensor D = at::empty({v.a, v.d}, opt);
  T* dd = D.data_ptr<T>();
  const bool keep_prev = v.b1 != nullptr;
  at::parallel_for(0, n, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dd[i] = base_update(v, h, keep_prev, i);
  });
  w2d.sub_(at::mm(D, P), static_cast<double>(h.lr));
}

void check_state(const at::Tensor& x, const at::Tensor& p, const char* what, size_t i) {
  TORCH_CHECK_VALUE(x.device().is_cpu() && x.scalar_type() == p.scalar_type() &&
                        x.sizes() == p.sizes() && x.is_contiguous(),
                    "hebbkern.fop_step_: ", what, "[", i,
                    "] must be a contiguous CPU tensor of the dtype and shape of params[", i, "] ",
                    p.sizes(), ", got ", x.scalar_type(), " ", x.sizes());
}

template <typename T>
void step_group(at::TensorList params, at::TensorList grads, at::TensorList precond,
                at::TensorList buf1, at::TensorList buf2, at::TensorList steps, Base base,
                double lr, double hyper_lr, double momentum, double beta1, double beta2, double eps,
                double wd) {
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor p = params[i];
    const at::Tensor& M = precond[i];
    const bool pre = M.numel() > 0;
    const bool needs_b1 = base != Base::Sgd || pre;
    const double t = steps[i].item<double>() + 1;
    steps[i].fill_(t);

    Hyper<T> h{};
    h.base = base;
    h.lr = static_cast<T>(lr);
    h.momentum = static_cast<T>(momentum);
    h.beta1 = static_cast<T>(beta1);
    h.beta2 = static_cast<T>(beta2);
    h.eps = static_cast<T>(eps);
    h.wd = static_cast<T>(wd);
    h.hyper_lr = hyper_lr;
    h.first = t <= 1;
    if (base == Base::Adam) {
      h.bc1 = static_cast<T>(1 - std::pow(beta1, t));
      h.bc2_sqrt = static_cast<T>(std::sqrt(1 - std::pow(beta2, t)));
      h.bc1_prev = static_cast<T>(1 - std::pow(beta1, t - 1));
      h.bc2_sqrt_prev = static_cast<T>(std::sqrt(1 - std::pow(beta2, t - 1)));
    }

    // A non-contiguous parameter (e.g. a channels-last conv weight) is stepped in a contiguous
    // copy, written back at the end.
    at::Tensor w = p.is_contiguous() ? p : p.contiguous();
    at::Tensor g = grads[i].contiguous();
    View<T> v{};
    v.w = w.data_ptr<T>();
    v.g = g.data_ptr<T>();
    v.b1 = needs_b1 ? buf1[i].data_ptr<T>() : nullptr;
    v.b2 = base == Base::Adam ? buf2[i].data_ptr<T>() : nullptr;
    const int64_t n = p.numel();
    if (!pre) {
      apply_plain(v, h, n);
    } else {
      v.d = M.size(0);
      v.a = n / v.d;
      at::Tensor Mt = M;
      if (v.d <= kSmallD) {
        std::vector<double> S;
        if (!h.first) S = hyper_product_small(v, h);
        const auto P =
            update_precond_small(Mt.data_ptr<T>(), h.first ? nullptr : &S, hyper_lr * lr, v.d);
        apply_small(v, h, P);
      } else {
        at::Tensor w2d = w.view({v.a, v.d});
        step_large(v, h, w2d, Mt, p.options());
      }
    }
    if (!w.is_same(p)) p.copy_(w);
  }
}

}  // namespace

void fop_step_cpu(at::TensorList params, at::TensorList grads, at::TensorList precond,
                  at::TensorList buf1, at::TensorList buf2, at::TensorList steps,
                  const std::string& base_name, double lr, double hyper_lr, double momentum,
                  double beta1, double beta2, double eps, double weight_decay) {
  Base base;
  if (base_name == "adam")
    base = Base::Adam;
  else if (base_name == "sgd")
    base = momentum != 0 ? Base::Momentum : Base::Sgd;
  else
    TORCH_CHECK_VALUE(false, "hebbkern.fop_step_: base must be 'sgd' or 'adam', got '", base_name,
                      "'");
  TORCH_CHECK_VALUE(base != Base::Adam || momentum == 0,
                    "hebbkern.fop_step_: momentum must be 0 with base 'adam'");
  const size_t n = params.size();
  TORCH_CHECK_VALUE(
      grads.size() == n && precond.size() == n && buf1.size() == n && steps.size() == n,
      "hebbkern.fop_step_: grads, precond, buf1 and steps must have one entry per "
      "parameter (",
      n, ")");
  TORCH_CHECK_VALUE(buf2.size() == (base == Base::Adam ? n : 0),
                    "hebbkern.fop_step_: buf2 must have one entry per parameter for base 'adam' "
                    "and be empty for 'sgd'");
  if (n == 0) return;
  const auto dtype = params[0].scalar_type();
  TORCH_CHECK_VALUE(dtype == at::kFloat || dtype == at::kDouble,
                    "hebbkern.fop_step_: params must be float32 or float64, got ", dtype);
  // Every check runs before any parameter moves, so a bad entry leaves the group untouched.
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& p = params[i];
    TORCH_CHECK_VALUE(p.device().is_cpu() && p.scalar_type() == dtype,
                      "hebbkern.fop_step_: params[", i, "] must be a CPU tensor of dtype ", dtype,
                      ", got ", p.scalar_type(), " on ", p.device());
    const at::Tensor& g = grads[i];
    TORCH_CHECK_VALUE(g.device().is_cpu() && g.scalar_type() == dtype && g.sizes() == p.sizes(),
                      "hebbkern.fop_step_: grads[", i,
                      "] must be a CPU tensor of the dtype and shape of params[", i, "] ",
                      p.sizes(), ", got ", g.scalar_type(), " ", g.sizes());
    TORCH_CHECK_VALUE(!g.is_sparse(), "hebbkern.fop_step_: grads[", i, "] must be dense");
    const at::Tensor& M = precond[i];
    const bool pre = M.numel() > 0;
    if (pre) {
      TORCH_CHECK_VALUE(M.dim() == 2 && M.size(0) == M.size(1) && M.is_contiguous() &&
                            M.device().is_cpu() && M.scalar_type() == dtype &&
                            p.numel() % M.size(0) == 0,
                        "hebbkern.fop_step_: precond[", i,
                        "] must be a contiguous square CPU matrix [d, d] of dtype ", dtype,
                        " with d dividing params[", i, "].numel() (", p.numel(), "), got ",
                        M.scalar_type(), " ", M.sizes());
    }
    if (base != Base::Sgd || pre) check_state(buf1[i], p, "buf1", i);
    if (base == Base::Adam) check_state(buf2[i], p, "buf2", i);
    const at::Tensor& s = steps[i];
    TORCH_CHECK_VALUE(s.device().is_cpu() && s.numel() == 1 && s.scalar_type() == at::kFloat,
                      "hebbkern.fop_step_: steps[", i,
                      "] must be a one-element float32 CPU tensor, got ", s.scalar_type(), " ",
                      s.sizes());
  }
  AT_DISPATCH_FLOATING_TYPES(dtype, "fop_step_cpu", [&] {
    step_group<scalar_t>(params, grads, precond, buf1, buf2, steps, base, lr, hyper_lr, momentum,
                         beta1, beta2, eps, weight_decay);
  });
}

}  // namespace hebbkern
