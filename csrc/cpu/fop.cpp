// Fused CPU FOP step: every parameter of a group in one call (SPEC.md section 5; the oracle is
// hebbkern/reference/fop.py, whose order of operations this file follows).
//
// Per preconditioned parameter, viewed as [a, d] with M [d, d]:
//   pass 1 (read only): S = D_{t-1}^T G_t, with D_{t-1} the kept previous direction (the momentum
//           buffer for momentum SGD) and G_t = grad + weight_decay * W formed on the fly;
//   M += hyper_lr * lr * (S + S^T) M, then P = M M^T (d x d, small);
//   pass 2: the base optimiser's state update and D_t, then W -= lr * D_t P, row block by block.
// The two passes cannot merge: P_t needs the reduction over all rows of G_t before the first row
// moves. For d <= kSmallD (3x3 and 1x1 conv kernels) pass 1 also updates the base optimiser's
// state in place, leaving D_t where D_{t-1} was, so pass 2 reads only D_t and W; one row is one
// vector of kSmallD lanes, no transposes. For d <= kMaxD (5x5, 7x7 kernels; small linear layers)
// both passes are the transposed-block row kernels. Both kinds live in fop_kernel.h, compiled for
// the best instruction set of the CPU; for larger d the products are BLAS GEMMs (skinny ones,
// d x a x d, are slow in BLAS, wide ones are not).
//
// The reduction of pass 1 runs over fixed chunks of rows summed in chunk order, so a result never
// depends on the thread count or scheduling: a resumed run continues bit-identically.
#include "../fop.h"

#include <ATen/Parallel.h>
#include <torch/types.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fop_kernel_args.h"
#include "isa.h"

namespace hebbkern {

namespace fop_cpu {
namespace {

// One instruction-set choice for every kernel family (isa.cpp): the best the CPU supports,
// capped by $HEBBKERN_CPU_ISA.
using cpu::active_isa;
using cpu::Isa;

#define HEBBKERN_FOP_DISPATCH(fn, ...) HEBBKERN_CPU_DISPATCH(active_isa(), fop_cpu, fn, __VA_ARGS__)

template <typename T>
void run_step_rows(const StepArgs<T>& a, int64_t r0, int64_t r1) {
  HEBBKERN_FOP_DISPATCH(step_rows, a, r0, r1)
}
template <typename T>
void run_step_elements(const StepArgs<T>& a, int64_t i0, int64_t i1, bool store) {
  HEBBKERN_FOP_DISPATCH(step_elements, a, i0, i1, store)
}
template <typename T>
void run_hyper_rows(const HyperArgs<T>& a, int64_t r0, int64_t r1, double* S, T* lanes) {
  HEBBKERN_FOP_DISPATCH(hyper_rows, a, r0, r1, S, lanes)
}

template <typename T>
void run_small_pass1(const StepArgs<T>& a, int64_t r0, int64_t r1, double* S) {
  HEBBKERN_FOP_DISPATCH(small_pass1, a, r0, r1, S)
}
template <typename T>
void run_small_pass2(const StepArgs<T>& a, int64_t r0, int64_t r1) {
  HEBBKERN_FOP_DISPATCH(small_pass2, a, r0, r1)
}

// Rows per chunk of the pass-1 reduction (fixed, so the summation order is too).
constexpr int64_t kChunkRows = 1024;
constexpr int64_t kGrain = 1 << 14;  // elements per parallel task of the elementwise passes

// S = D_{t-1}^T G_t [d, d] for d <= kMaxD, in double.
template <typename T>
std::vector<double> hyper_product(const HyperArgs<T>& h, int64_t a) {
  const int64_t d = h.d;
  const int64_t nchunks = (a + kChunkRows - 1) / kChunkRows;
  std::vector<double> partial(nchunks * d * d, 0.0);
  at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<T> lanes(d * d * 16);
    for (int64_t c = c0; c < c1; ++c)
      run_hyper_rows(h, c * kChunkRows, std::min(a, (c + 1) * kChunkRows),
                     partial.data() + c * d * d, lanes.data());
  });
  std::vector<double> S(d * d, 0.0);
  for (int64_t c = 0; c < nchunks; ++c)
    for (int64_t e = 0; e < d * d; ++e) S[e] += partial[c * d * d + e];
  return S;
}

// M += c (S + S^T) M in place (when S is given), then P = M M^T, for small d, in double.
template <typename T>
std::vector<T> update_precond_small(T* M, const std::vector<double>* S, double c, int64_t d) {
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
  std::vector<T> P(d * d);
  for (int64_t j = 0; j < d; ++j)
    for (int64_t k = 0; k < d; ++k) {
      double s = 0;
      for (int64_t l = 0; l < d; ++l) s += m[j * d + l] * m[k * d + l];
      P[j * d + k] = static_cast<T>(s);
    }
  return P;
}

void check_state(const at::Tensor& x, const at::Tensor& p, const char* what, size_t i) {
  TORCH_CHECK_VALUE(x.device().is_cpu() && x.scalar_type() == p.scalar_type() &&
                        x.sizes() == p.sizes() && x.is_contiguous(),
                    "hebbkern.fop_step_: ", what, "[", i,
                    "] must be a contiguous CPU tensor of the dtype and shape of params[", i, "] ",
                    p.sizes(), ", got ", x.scalar_type(), " ", x.sizes());
}

// Elements per batch of d <= kSmallD tensors stepped together: pass 1 of the whole batch in one
// parallel region, then pass 2 in another, so that a ResNet-sized group opens a dozen parallel
// regions instead of two per tensor (each costs a time slice when another process holds a core),
// while a batch's state stays within the last-level cache between its two passes.
constexpr int64_t kBatchElems = int64_t(1) << 21;

// A piece of parallel work: rows [begin, end) of tensor i (elements for unpreconditioned ones),
// with `S` the partial [d, d] sum of its pass-1 chunk (null: none).
struct Task {
  size_t i;
  int64_t begin, end;
  double* S;
};

template <typename T>
void step_group(at::TensorList params, at::TensorList grads, at::TensorList precond,
                at::TensorList prev_dir, at::TensorList buf1, at::TensorList buf2,
                at::TensorList steps, Base base, double lr, double hyper_lr, double momentum,
                double beta1, double beta2, double eps, double wd) {
  const size_t np = params.size();
  const double c = hyper_lr * lr;
  std::vector<StepArgs<T>> args(np);
  // A non-contiguous parameter (e.g. a channels-last conv weight) is stepped in a contiguous
  // copy, written back at the end.
  std::vector<at::Tensor> ws(np), gs(np);
  std::vector<size_t> small, other;
  std::vector<Task> elementwise;
  for (size_t i = 0; i < np; ++i) {
    const at::Tensor& p = params[i];
    const at::Tensor& M = precond[i];
    const bool pre = M.numel() > 0;
    const double t = steps[i].item<double>() + 1;
    steps[i].fill_(t);
    ws[i] = p.is_contiguous() ? p : p.contiguous();
    gs[i] = grads[i].contiguous();
    StepArgs<T>& s = args[i];
    s = StepArgs<T>{};
    s.w = ws[i].data_ptr<T>();
    s.g = gs[i].const_data_ptr<T>();
    s.b1 = base != Base::Sgd ? buf1[i].data_ptr<T>() : nullptr;
    s.b2 = base == Base::Adam ? buf2[i].data_ptr<T>() : nullptr;
    s.prev = pre && base != Base::Momentum ? prev_dir[i].data_ptr<T>() : nullptr;
    s.base = base;
    s.first = t <= 1;
    s.lr = static_cast<T>(lr);
    s.momentum = static_cast<T>(momentum);
    s.beta1 = static_cast<T>(beta1);
    s.beta2 = static_cast<T>(beta2);
    s.eps = static_cast<T>(eps);
    s.wd = static_cast<T>(wd);
    if (base == Base::Adam) {
      s.bc1 = static_cast<T>(1 - std::pow(beta1, t));
      s.bc2_sqrt = static_cast<T>(std::sqrt(1 - std::pow(beta2, t)));
    }
    const int64_t n = p.numel();
    s.d = pre ? M.size(0) : 0;
    if (!pre) {
      for (int64_t e = 0; e < n; e += kGrain)
        elementwise.push_back({i, e, std::min(n, e + kGrain)});
    } else if (s.d <= kSmallD) {
      small.push_back(i);
    } else {
      other.push_back(i);
    }
  }

  // Unpreconditioned parameters (biases, norms): W -= lr * D, one region for all of them.
  if (!elementwise.empty())
    at::parallel_for(0, elementwise.size(), 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k)
        run_step_elements(args[elementwise[k].i], elementwise[k].begin, elementwise[k].end, false);
    });

  // d <= kSmallD, batch by batch. Pass 1 updates the base state and reduces S = D_{t-1}^T G_t
  // over fixed chunks of rows, summed in chunk order: the result does not depend on the thread
  // count. Then M and P per tensor (small, serial), then pass 2.
  for (size_t b0 = 0; b0 < small.size();) {
    size_t b1 = b0;
    for (int64_t elems = 0;
         b1 < small.size() && (b1 == b0 || elems + params[small[b1]].numel() <= kBatchElems); ++b1)
      elems += params[small[b1]].numel();
    std::vector<Task> tasks;
    std::vector<std::vector<double>> partial(b1 - b0);
    for (size_t k = b0; k < b1; ++k) {
      const size_t i = small[k];
      const int64_t d = args[i].d, a = params[i].numel() / d;
      const int64_t nchunks = (a + kChunkRows - 1) / kChunkRows;
      if (!args[i].first) partial[k - b0].assign(nchunks * d * d, 0.0);
      for (int64_t ch = 0; ch < nchunks; ++ch)
        tasks.push_back({i, ch * kChunkRows, std::min(a, (ch + 1) * kChunkRows),
                         args[i].first ? nullptr : partial[k - b0].data() + ch * d * d});
    }
    at::parallel_for(0, tasks.size(), 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k)
        run_small_pass1(args[tasks[k].i], tasks[k].begin, tasks[k].end, tasks[k].S);
    });
    std::vector<std::vector<T>> P16(b1 - b0);
    for (size_t k = b0; k < b1; ++k) {
      const size_t i = small[k];
      const int64_t d = args[i].d;
      std::vector<double> S;
      if (!args[i].first) {
        S.assign(d * d, 0.0);
        const std::vector<double>& part = partial[k - b0];
        for (size_t e0 = 0; e0 < part.size(); e0 += d * d)
          for (int64_t e = 0; e < d * d; ++e) S[e] += part[e0 + e];
      }
      const std::vector<T> P =
          update_precond_small(precond[i].data_ptr<T>(), args[i].first ? nullptr : &S, c, d);
      std::vector<T>& p16 = P16[k - b0];
      p16.assign(d * kSmallD, T(0));
      for (int64_t j = 0; j < d; ++j)
        for (int64_t l = 0; l < d; ++l) p16[j * kSmallD + l] = P[j * d + l];
      args[i].P = p16.data();
    }
    // Pass 2 in pieces of about kChunkRows * 9 elements.
    tasks.clear();
    for (size_t k = b0; k < b1; ++k) {
      const size_t i = small[k];
      const int64_t d = args[i].d, a = params[i].numel() / d;
      const int64_t rows = std::max<int64_t>(kRows, kChunkRows * 9 / d / kRows * kRows);
      for (int64_t r = 0; r < a; r += rows) tasks.push_back({i, r, std::min(a, r + rows)});
    }
    at::parallel_for(0, tasks.size(), 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k)
        run_small_pass2(args[tasks[k].i], tasks[k].begin, tasks[k].end);
    });
    b0 = b1;
  }

  // kSmallD < d: one tensor at a time.
  for (const size_t i : other) {
    StepArgs<T>& s = args[i];
    const at::Tensor& M = precond[i];
    const at::Tensor& w = ws[i];
    const at::Tensor& g = gs[i];
    const int64_t n = params[i].numel(), d = s.d, a = n / d;
    T* dprev = base == Base::Momentum ? s.b1 : s.prev;
    if (d <= kMaxD) {
      std::vector<double> S;
      if (!s.first) S = hyper_product(HyperArgs<T>{dprev, s.g, s.w, s.wd, d}, a);
      const std::vector<T> P = update_precond_small(M.data_ptr<T>(), s.first ? nullptr : &S, c, d);
      s.P = P.data();
      at::parallel_for(0, a, kRows * 4, [&](int64_t r0, int64_t r1) { run_step_rows(s, r0, r1); });
    } else {
      at::Tensor w2d = w.view({a, d});
      at::Tensor D = (base == Base::Momentum ? buf1[i] : prev_dir[i]).view({a, d});
      if (!s.first) {
        at::Tensor S = at::mm(D.t(), g.view({a, d}));
        if (wd != 0) S.addmm_(D.t(), w2d, 1, wd);
        M.add_(at::mm(S + S.t(), M), c);
      }
      at::Tensor P = at::mm(M, M.t());
      at::parallel_for(0, n, kGrain,
                       [&](int64_t i0, int64_t i1) { run_step_elements(s, i0, i1, true); });
      w2d.addmm_(D, P, 1, -lr);
    }
  }
  for (size_t i = 0; i < np; ++i)
    if (!ws[i].is_same(params[i])) params[i].copy_(ws[i]);
}

}  // namespace
}  // namespace fop_cpu

void fop_step_cpu(at::TensorList params, at::TensorList grads, at::TensorList precond,
                  at::TensorList prev_dir, at::TensorList buf1, at::TensorList buf2,
                  at::TensorList steps, const std::string& base_name, double lr, double hyper_lr,
                  double momentum, double beta1, double beta2, double eps, double weight_decay) {
  using fop_cpu::Base;
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
      grads.size() == n && precond.size() == n && prev_dir.size() == n && steps.size() == n,
      "hebbkern.fop_step_: grads, precond, prev_dir and steps must have one entry "
      "per parameter (",
      n, ")");
  TORCH_CHECK_VALUE(buf1.size() == (base == Base::Sgd ? 0 : n),
                    "hebbkern.fop_step_: buf1 must have one entry per parameter for momentum SGD "
                    "and Adam and be empty for plain SGD");
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
    TORCH_CHECK_VALUE(g.layout() == at::kStrided, "hebbkern.fop_step_: grads[", i,
                      "] must be dense");
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
      if (base != Base::Momentum) fop_cpu::check_state(prev_dir[i], p, "prev_dir", i);
    }
    if (base != Base::Sgd) fop_cpu::check_state(buf1[i], p, "buf1", i);
    if (base == Base::Adam) fop_cpu::check_state(buf2[i], p, "buf2", i);
    const at::Tensor& s = steps[i];
    TORCH_CHECK_VALUE(s.device().is_cpu() && s.numel() == 1 && s.scalar_type() == at::kFloat,
                      "hebbkern.fop_step_: steps[", i,
                      "] must be a one-element float32 CPU tensor, got ", s.scalar_type(), " ",
                      s.sizes());
  }
  AT_DISPATCH_FLOATING_TYPES(dtype, "fop_step_cpu", [&] {
    fop_cpu::step_group<scalar_t>(params, grads, precond, prev_dir, buf1, buf2, steps, base, lr,
                                  hyper_lr, momentum, beta1, beta2, eps, weight_decay);
  });
}

}  // namespace hebbkern
