// CPU kernels of plastic_lstm (SPEC.md section 2): the Backpropamine plastic LSTM over a sequence.
//
// Per step, the gate GEMM of the whole batch (h_{t-1} wh) runs through ATen; then, per sample,
// one pass over the trace updates H_{t-1} -> H_t and, row by row while the row is still in L1,
// accumulates the next step's plastic term h_t (alpha * H_t). The forward keeps the trace only
// every K steps; the backward recomputes the traces of one chunk at a time from those checkpoints,
// so memory holds O(T / K + K) [B, N, N] tensors, never one per step.
#include "../plastic_lstm.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "plastic_lstm_kernel_args.h"

namespace hebbkern {

namespace {

using cpu::Isa;
using cpu::LstmArgs;
using cpu::LstmBwdStep;
using cpu::LstmFwdStep;

// The per-ISA entry points (plastic_lstm_kernel.cpp), chosen once per op call.
#define HK_LSTM_DISPATCH(isa, fn, ...) HEBBKERN_CPU_DISPATCH(isa, cpu, fn, __VA_ARGS__)

template <typename T>
void plastic_term(Isa isa, const LstmArgs<T>& p, const T* h, const T* H, T* q) {
  HK_LSTM_DISPATCH(isa, lstm_plastic_term, p, h, H, q)
}
template <typename T>
void forward_step(Isa isa, Rule r, const LstmArgs<T>& p, const LstmFwdStep<T>& s) {
  HK_LSTM_DISPATCH(isa, lstm_forward_step, r, p, s)
}
template <typename T>
void trace_step(Isa isa, Rule r, const LstmArgs<T>& p, const T* hp, const T* g, const T* mm,
                const T* Hi, const T* Ei, T* Ho, T* Eo) {
  HK_LSTM_DISPATCH(isa, lstm_trace_step, r, p, hp, g, mm, Hi, Ei, Ho, Eo)
}
template <typename T>
void backward_step(Isa isa, Rule r, const LstmArgs<T>& p, const LstmBwdStep<T>& s) {
  HK_LSTM_DISPATCH(isa, lstm_backward_step, r, p, s)
}
#undef HK_LSTM_DISPATCH

template <typename T>
void modulation(const LstmArgs<T>& p, T m, T* mm) {
  for (int64_t j = 0; j < p.N; ++j) mm[j] = p.fan_w ? p.fan_w[j] * m + p.fan_b[j] : m;
}

constexpr const char* kName = "hebbkern::plastic_lstm: ";

// The rule and the scalar arguments the forward and the backward both check.
Rule parse_scalars(const std::string& rule_name, double clip, int64_t ckpt_every) {
  const Rule rule = parse_rule(rule_name);
  TORCH_CHECK_VALUE(ckpt_every >= 1, kName, "ckpt_every must be >= 1");
  TORCH_CHECK_VALUE(clip > 0, kName, "clip must be > 0");
  return rule;
}

// x must be float32 or float64 (the error names it).
void check_float(const at::Tensor& x, const char* name) {
  TORCH_CHECK_VALUE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, kName, name,
                    " must be float32 or float64, got ", x.scalar_type());
}

void check_tensor(const at::Tensor& t, at::IntArrayRef shape, const at::Tensor& ref,
                  const char* name) {
  TORCH_CHECK_VALUE(t.sizes() == shape, kName, name, " must have shape ", shape, ", got ",
                    t.sizes());
  TORCH_CHECK_VALUE(t.scalar_type() == ref.scalar_type(), kName, name, " must have dtype ",
                    ref.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == ref.device(), kName, name, " must be on ", ref.device());
}

at::Tensor opt(const std::optional<at::Tensor>& t, at::IntArrayRef shape, const at::Tensor& ref,
               const char* name) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  check_tensor(*t, shape, ref, name);
  return t->contiguous();
}

double scalar_of(const std::optional<at::Tensor>& t, const at::Tensor& ref, const char* name,
                 bool required) {
  if (!t.has_value() || !t->defined()) {
    TORCH_CHECK_VALUE(!required, kName, "this rule needs ", name);
    return 0.0;
  }
  TORCH_CHECK_VALUE(t->numel() == 1, kName, name, " must have one element, got ", t->sizes());
  TORCH_CHECK_VALUE(t->scalar_type() == ref.scalar_type(), kName, name, " must have dtype ",
                    ref.scalar_type());
  return t->item<double>();
}

// The arguments both directions share, checked and made contiguous.
struct Prepared {
  int64_t T_, B, N;
  at::Tensor wh, A, h0, c0, mod_w, fan_w, fan_b;
  double eta, mod_b;
};

// N comes from the caller's u ([T, B, 4N]) or h ([T, B, N]): an expected shape derived from wh
// itself would name a shape wh already has.
Prepared prepare(Rule rule, int64_t T_, int64_t B, int64_t N, const at::Tensor& ref,
                 const at::Tensor& wh, const at::Tensor& alpha, const std::optional<at::Tensor>& h0,
                 const std::optional<at::Tensor>& c0, const std::optional<at::Tensor>& eta,
                 const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
                 const std::optional<at::Tensor>& fanout_w,
                 const std::optional<at::Tensor>& fanout_b) {
  TORCH_CHECK_VALUE(T_ >= 1, kName, "the sequence needs at least one step");
  TORCH_CHECK_VALUE(wh.dim() == 2 && wh.size(0) == N && wh.size(1) == 4 * N, kName,
                    "wh must have shape [N, 4N] = [", N, ", ", 4 * N, "] with N = ", N, " from ",
                    ref.sizes(), ", got ", wh.sizes());
  check_tensor(wh, {N, 4 * N}, ref, "wh");
  TORCH_CHECK_VALUE(alpha.dim() <= 2, kName, "alpha must be [N, N], [N] or 0-dim");
  if (alpha.dim() == 2)
    check_tensor(alpha, {N, N}, ref, "alpha");
  else if (alpha.dim() == 1)
    check_tensor(alpha, {N}, ref, "alpha");
  else
    check_tensor(alpha, {}, ref, "alpha");
  Prepared q;
  q.T_ = T_;
  q.B = B;
  q.N = N;
  q.wh = wh.contiguous();
  // Per-neuron and scalar alpha become one shared row (row stride 0).
  q.A = alpha.dim() == 2 ? alpha.contiguous() : alpha.expand({N}).contiguous();
  q.h0 = opt(h0, {B, N}, ref, "h0");
  q.c0 = opt(c0, {B, N}, ref, "c0");
  if (!q.h0.defined()) q.h0 = at::zeros({B, N}, ref.options());
  if (!q.c0.defined()) q.c0 = at::zeros({B, N}, ref.options());
  q.eta = uses_eta(rule) ? scalar_of(eta, ref, "eta", true) : 0.0;
  const bool modulated = is_modulated(rule);
  if (modulated) {
    TORCH_CHECK_VALUE(mod_w.has_value() && mod_w->defined(), kName, "this rule needs mod_w");
    q.mod_w = opt(mod_w, {N}, ref, "mod_w");
    q.mod_b = scalar_of(mod_b, ref, "mod_b", false);
    q.fan_w = opt(fanout_w, {N}, ref, "fanout_w");
    q.fan_b = opt(fanout_b, {N}, ref, "fanout_b");
    TORCH_CHECK_VALUE(q.fan_w.defined() == q.fan_b.defined(), kName,
                      "fanout_w and fanout_b go together");
  } else {
    q.mod_b = 0.0;
  }
  return q;
}

template <typename T>
T* ptr(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

template <typename T>
LstmArgs<T> make_args(const Prepared& q, double clip, int64_t K, int64_t variant) {
  LstmArgs<T> p{};
  p.T_ = q.T_;
  p.B = q.B;
  p.N = q.N;
  p.K = std::min(K, q.T_);
  p.A = q.A.data_ptr<T>();
  p.a_stride = q.A.dim() == 2 ? q.N : 0;
  p.mod_w = ptr<T>(q.mod_w);
  p.fan_w = ptr<T>(q.fan_w);
  p.fan_b = ptr<T>(q.fan_b);
  p.eta = static_cast<T>(q.eta);
  p.mod_b = static_cast<T>(q.mod_b);
  // The read-out clip moves the bound from the update (made infinite) to the read.
  p.read = lstm_read_clip(variant);
  p.read_clip = static_cast<T>(clip);
  p.clip = p.read ? static_cast<T>(INFINITY) : static_cast<T>(clip);
  p.post = static_cast<int>(lstm_post(variant));
  return p;
}

at::Tensor none_like(const at::Tensor& ref) { return at::empty({0}, ref.options()); }

// The batch GEMMs run on fixed blocks of kGemmRows samples, whatever the thread count: a GEMM's
// summation order depends on how many rows it is given, so blocks that followed the threads' share
// of the batch made the results change with the thread count. Threads take whole blocks; two
// rows keep the split between threads even (at most one block apart).
constexpr int64_t kGemmRows = 2;

int64_t gemm_blocks(int64_t B) { return (B + kGemmRows - 1) / kGemmRows; }

// rows[r0, r1) of out = beta * self + mat1 @ mat2, in the fixed blocks (r0 is a block start).
// beta = 0 ignores self (post "drive" keeps h wh apart from u).
void blocked_addmm(at::Tensor& out, const at::Tensor& self, const at::Tensor& mat1,
                   const at::Tensor& mat2, int64_t r0, int64_t r1, double beta = 1.0) {
  for (int64_t r = r0; r < r1; r += kGemmRows) {
    const int64_t n = std::min(kGemmRows, r1 - r);
    at::Tensor o = out.narrow(0, r, n);
    at::addmm_out(o, self.narrow(0, r, n), mat1.narrow(0, r, n), mat2, beta);
  }
}

// Checks the variant code against the rule; returns the gates' width per sample (4N, or 5N with
// the drive kept for the backward).
int64_t check_variant(Rule rule, int64_t variant, int64_t N) {
  TORCH_CHECK_VALUE(variant >= 0 && variant < 8, kName, "invalid variant code ", variant,
                    " (hebbkern/ops/plastic_lstm.py)");
  TORCH_CHECK_VALUE(!lstm_read_clip(variant) || is_clipped(rule), kName,
                    "the read-out clip applies to the clipped rules only");
  return lstm_post(variant) == LstmPost::Drive ? 5 * N : 4 * N;
}

LstmFwdOut plastic_lstm_fwd_cpu(
    const at::Tensor& u, const at::Tensor& wh, const at::Tensor& alpha,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& c0,
    const std::optional<at::Tensor>& hebb0, const std::optional<at::Tensor>& elig0,
    const std::optional<at::Tensor>& eta, const std::optional<at::Tensor>& mod_w,
    const std::optional<at::Tensor>& mod_b, const std::optional<at::Tensor>& fanout_w,
    const std::optional<at::Tensor>& fanout_b, const std::string& rule_name, double clip,
    int64_t ckpt_every, int64_t variant) {
  const Rule rule = parse_scalars(rule_name, clip, ckpt_every);
  TORCH_CHECK_VALUE(u.dim() == 3, kName, "u must be [T, B, 4N], got ", u.sizes());
  check_float(u, "u");
  TORCH_CHECK_VALUE(u.size(2) >= 4 && u.size(2) % 4 == 0, kName,
                    "u must be [T, B, 4N] with N >= 1 (the gate inputs), got ", u.sizes());
  const int64_t T_ = u.size(0), B = u.size(1);
  const Prepared q = prepare(rule, T_, B, u.size(2) / 4, u, wh, alpha, h0, c0, eta, mod_w, mod_b,
                             fanout_w, fanout_b);
  const int64_t N = q.N;
  const int64_t GW = check_variant(rule, variant, N);
  const bool drive = GW != 4 * N;
  const at::Tensor uc = u.contiguous();
  const bool elig = has_eligibility(rule), modulated = is_modulated(rule);
  const at::Tensor H0 = opt(hebb0, {B, N, N}, u, "hebb0");
  const at::Tensor E0 = elig ? opt(elig0, {B, N, N}, u, "elig0") : at::Tensor();
  const int64_t K = std::min(ckpt_every, T_);
  const int64_t C = (T_ + K - 1) / K;
  const auto opts = u.options();
  at::Tensor h = at::empty({T_, B, N}, opts), c = at::empty({T_, B, N}, opts);
  at::Tensor gates = at::empty({T_, B, GW}, opts);
  at::Tensor H = H0.defined() ? H0.clone() : at::zeros({B, N, N}, opts);
  at::Tensor E = elig ? (E0.defined() ? E0.clone() : at::zeros({B, N, N}, opts)) : none_like(u);
  at::Tensor ck_h = at::empty({C, B, N, N}, opts);
  at::Tensor ck_e = elig ? at::empty({C, B, N, N}, opts) : none_like(u);
  at::Tensor mod = modulated ? at::empty({T_, B}, opts) : none_like(u);
  at::Tensor qbuf = at::empty({B, N}, opts);

  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "plastic_lstm_fwd_cpu", [&] {
    using T = scalar_t;
    const LstmArgs<T> p = make_args<T>(q, clip, ckpt_every, variant);
    const T* uP = uc.data_ptr<T>();
    T *hP = h.data_ptr<T>(), *cP = c.data_ptr<T>(), *GP = gates.data_ptr<T>();
    T *HP = H.data_ptr<T>(), *EP = ptr<T>(E), *ckH = ck_h.data_ptr<T>(), *ckE = ptr<T>(ck_e);
    T *modP = ptr<T>(mod), *qP = qbuf.data_ptr<T>();
    const T *h0P = q.h0.data_ptr<T>(), *c0P = q.c0.data_ptr<T>();
    const int64_t NN = N * N;
    const Isa isa = cpu::active_isa();
    // One region for the whole sequence: each thread runs every step for its block of samples,
    // including its rows of the gate GEMM, so no barrier separates the steps.
    // The worker threads call ATen (addmm): they need the caller's thread-local state (the
    // dispatch keys excluded below autograd, grad mode), which OpenMP threads do not inherit.
    const at::ThreadLocalState tls;
    at::parallel_for(0, gemm_blocks(B), 1, [&](int64_t k0, int64_t k1) {
      const at::ThreadLocalStateGuard tls_guard(tls);
      const int64_t b0 = k0 * kGemmRows, b1 = std::min(B, k1 * kGemmRows);
      std::vector<T> mm(N);
      for (int64_t b = b0; b < b1; ++b) plastic_term(isa, p, h0P + b * N, HP + b * NN, qP + b * N);
      for (int64_t t = 0; t < T_; ++t) {
        const at::Tensor hprev = t == 0 ? q.h0 : h.select(0, t - 1);
        at::Tensor gt = gates.select(0, t).narrow(1, 0, 4 * N);
        blocked_addmm(gt, uc.select(0, t), hprev, q.wh, b0, b1, drive ? 0.0 : 1.0);
        for (int64_t b = b0; b < b1; ++b) {
          T* Hb = HP + b * NN;
          T* Eb = elig ? EP + b * NN : nullptr;
          if (t % K == 0) {
            std::copy(Hb, Hb + NN, ckH + ((t / K) * B + b) * NN);
            if (elig) std::copy(Eb, Eb + NN, ckE + ((t / K) * B + b) * NN);
          }
          LstmFwdStep<T> s{};
          s.G = GP + (t * B + b) * GW;
          s.u = drive ? uP + (t * B + b) * 4 * N : nullptr;
          s.q = qP + b * N;
          s.hp = t == 0 ? h0P + b * N : hP + ((t - 1) * B + b) * N;
          s.cp = t == 0 ? c0P + b * N : cP + ((t - 1) * B + b) * N;
          s.ho = hP + (t * B + b) * N;
          s.co = cP + (t * B + b) * N;
          s.H = Hb;
          s.E = Eb;
          s.mod_out = modulated ? modP + t * B + b : nullptr;
          s.need_q = t + 1 < T_;
          s.mm = mm.data();
          forward_step(isa, rule, p, s);
        }
      }
    });
  });
  return {h, c, gates, H, E, ck_h, ck_e, mod};
}

LstmBwdOut plastic_lstm_bwd_cpu(
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_c,
    const std::optional<at::Tensor>& grad_hebb, const std::optional<at::Tensor>& grad_elig,
    const at::Tensor& wh, const at::Tensor& alpha, const std::optional<at::Tensor>& h0,
    const std::optional<at::Tensor>& c0, const at::Tensor& h, const at::Tensor& c,
    const at::Tensor& gates, const at::Tensor& hebb_ckpt, const at::Tensor& elig_ckpt,
    const at::Tensor& mod, const std::optional<at::Tensor>& eta,
    const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
    const std::optional<at::Tensor>& fanout_w, const std::optional<at::Tensor>& fanout_b,
    const std::string& rule_name, double clip, int64_t ckpt_every, int64_t variant) {
  const Rule rule = parse_scalars(rule_name, clip, ckpt_every);
  TORCH_CHECK_VALUE(h.dim() == 3, kName, "h must be [T, B, N], got ", h.sizes());
  check_float(h, "h");
  TORCH_CHECK_VALUE(h.size(2) >= 1, kName, "h must be [T, B, N] with N >= 1, got ", h.sizes());
  const int64_t T_ = h.size(0), B = h.size(1);
  const Prepared q =
      prepare(rule, T_, B, h.size(2), h, wh, alpha, h0, c0, eta, mod_w, mod_b, fanout_w, fanout_b);
  const int64_t N = q.N;
  const int64_t GW = check_variant(rule, variant, N);
  const LstmPost post = lstm_post(variant);
  const bool elig = has_eligibility(rule), modulated = is_modulated(rule);
  const bool fan = q.fan_w.defined();
  const int64_t K = std::min(ckpt_every, T_);
  const int64_t C = (T_ + K - 1) / K;
  check_tensor(h, {T_, B, N}, h, "h");
  check_tensor(c, {T_, B, N}, h, "c");
  check_tensor(gates, {T_, B, GW}, h, "gates");
  check_tensor(hebb_ckpt, {C, B, N, N}, h, "hebb_ckpt");
  if (elig) check_tensor(elig_ckpt, {C, B, N, N}, h, "elig_ckpt");
  if (modulated) check_tensor(mod, {T_, B}, h, "mod");
  const at::Tensor gh = opt(grad_h, {T_, B, N}, h, "grad_h");
  const at::Tensor gc = opt(grad_c, {T_, B, N}, h, "grad_c");
  const at::Tensor gH = opt(grad_hebb, {B, N, N}, h, "grad_hebb");
  const at::Tensor gE = elig ? opt(grad_elig, {B, N, N}, h, "grad_elig") : at::Tensor();
  const at::Tensor hC = h.contiguous(), cC = c.contiguous(), GC = gates.contiguous();
  const at::Tensor ckH = hebb_ckpt.contiguous();
  const at::Tensor ckE = elig ? elig_ckpt.contiguous() : at::Tensor();
  const at::Tensor modC = modulated ? mod.contiguous() : at::Tensor();
  const auto opts = h.options();

  at::Tensor du = at::empty({T_, B, 4 * N}, opts);
  at::Tensor dH = gH.defined() ? gH.clone() : at::zeros({B, N, N}, opts);
  at::Tensor dE = elig ? (gE.defined() ? gE.clone() : at::zeros({B, N, N}, opts)) : none_like(h);
  at::Tensor dh_next = at::zeros({B, N}, opts), dc = at::zeros({B, N}, opts);
  at::Tensor dpre = at::empty({B, N}, opts);
  // Post "drive": u's adjoint in the candidate block (du's own adds the drive's adjoint).
  at::Tensor dug = post == LstmPost::Drive ? at::empty({T_, B, N}, opts) : at::Tensor();
  // Traces before steps 1..K-1 of a chunk (step 0's is the checkpoint itself).
  at::Tensor Hs = at::empty({B, std::max<int64_t>(K - 1, 1), N, N}, opts);
  at::Tensor Es = elig ? at::empty({B, std::max<int64_t>(K - 1, 1), N, N}, opts) : at::Tensor();
  at::Tensor dA = alpha.dim() == 2 ? at::zeros({B, N, N}, opts) : at::zeros({B, N}, opts);
  at::Tensor deta_ps = at::zeros({B}, opts);
  at::Tensor dmw_ps = at::zeros({B, N}, opts), dmb_ps = at::zeros({B}, opts);
  at::Tensor dfw_ps = at::zeros({B, N}, opts), dfb_ps = at::zeros({B, N}, opts);
  const at::Tensor wh_t = q.wh.t();

  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "plastic_lstm_bwd_cpu", [&] {
    using T = scalar_t;
    const LstmArgs<T> p = make_args<T>(q, clip, ckpt_every, variant);
    const int64_t NN = N * N;
    T* dugP = ptr<T>(dug);
    const T *hP = hC.data_ptr<T>(), *cP = cC.data_ptr<T>(), *GP = GC.data_ptr<T>();
    const T *h0P = q.h0.data_ptr<T>(), *c0P = q.c0.data_ptr<T>();
    const T *ckHP = ckH.data_ptr<T>(), *ckEP = ptr<T>(ckE), *modP = ptr<T>(modC);
    const T *ghP = ptr<T>(gh), *gcP = ptr<T>(gc);
    T *HsP = Hs.data_ptr<T>(), *EsP = ptr<T>(Es), *dHP = dH.data_ptr<T>(), *dEP = ptr<T>(dE);
    T *duP = du.data_ptr<T>(), *dpreP = dpre.data_ptr<T>(), *dcP = dc.data_ptr<T>();
    const T* dhnP = dh_next.data_ptr<T>();
    T *dAP = dA.data_ptr<T>(), *detaP = deta_ps.data_ptr<T>();
    T *dmwP = dmw_ps.data_ptr<T>(), *dmbP = dmb_ps.data_ptr<T>();
    T *dfwP = dfw_ps.data_ptr<T>(), *dfbP = dfb_ps.data_ptr<T>();
    const int64_t dA_size = alpha.dim() == 2 ? NN : N;
    auto hprev = [&](int64_t t, int64_t b) {
      return t == 0 ? h0P + b * N : hP + ((t - 1) * B + b) * N;
    };
    // The trace (eligibility) before step k of chunk ci for sample b.
    const int64_t KS = std::max<int64_t>(K - 1, 1);
    auto trace_before = [&](int64_t ci, int64_t k, int64_t b) -> const T* {
      return k == 0 ? ckHP + (ci * B + b) * NN : HsP + (b * KS + k - 1) * NN;
    };
    auto elig_before = [&](int64_t ci, int64_t k, int64_t b) -> const T* {
      return k == 0 ? ckEP + (ci * B + b) * NN : EsP + (b * KS + k - 1) * NN;
    };
    auto cprev = [&](int64_t t, int64_t b) {
      return t == 0 ? c0P + b * N : cP + ((t - 1) * B + b) * N;
    };
    // The post-synaptic term of step t (SPEC.md section 2.1).
    auto post_of = [&](int64_t t, int64_t b) -> const T* {
      const int64_t r = t * B + b;
      switch (post) {
        case LstmPost::Drive: return GP + r * GW + 4 * N;
        case LstmPost::Cell: return cP + r * N;
        case LstmPost::Hidden: return hP + r * N;
        default: return GP + r * GW + 2 * N;
      }
    };
    const Isa isa = cpu::active_isa();
    // One region for the whole backward: each thread walks every chunk and step for its block of
    // samples, with its own rows of the dh_{t-1} GEMM, so no barrier separates the steps.
    // The worker threads call ATen (addmm): they need the caller's thread-local state (the
    // dispatch keys excluded below autograd, grad mode), which OpenMP threads do not inherit.
    const at::ThreadLocalState tls;
    at::parallel_for(0, gemm_blocks(B), 1, [&](int64_t k0, int64_t k1) {
      const at::ThreadLocalStateGuard tls_guard(tls);
      const int64_t b0 = k0 * kGemmRows, b1 = std::min(B, k1 * kGemmRows);
      std::vector<T> scratch(3 * N);
      for (int64_t ci = C - 1; ci >= 0; --ci) {
        const int64_t t0 = ci * K, t1 = std::min(T_, t0 + K);
        // Recompute the traces before each step of the chunk from its checkpoint.
        for (int64_t b = b0; b < b1; ++b) {
          for (int64_t t = t0; t + 1 < t1; ++t) {
            if (modulated) modulation(p, modP[t * B + b], scratch.data());
            trace_step(isa, rule, p, hprev(t, b), post_of(t, b), scratch.data(),
                       trace_before(ci, t - t0, b), elig ? elig_before(ci, t - t0, b) : nullptr,
                       HsP + (b * KS + t - t0) * NN, elig ? EsP + (b * KS + t - t0) * NN : nullptr);
          }
        }
        for (int64_t t = t1 - 1; t >= t0; --t) {
          const int64_t k = t - t0;
          for (int64_t b = b0; b < b1; ++b) {
            LstmBwdStep<T> s{};
            s.Hp = trace_before(ci, k, b);
            s.Ep = elig ? elig_before(ci, k, b) : nullptr;
            s.hp = hprev(t, b);
            s.cp = cprev(t, b);
            s.hc = hP + (t * B + b) * N;
            s.cc = cP + (t * B + b) * N;
            s.G = GP + (t * B + b) * GW;
            s.y = post_of(t, b);
            s.m = modulated ? modP[t * B + b] : T(0);
            s.gh = ghP ? ghP + (t * B + b) * N : nullptr;
            s.gc = gcP ? gcP + (t * B + b) * N : nullptr;
            s.dH = dHP + b * NN;
            s.dE = elig ? dEP + b * NN : nullptr;
            s.dh_next = dhnP + b * N;
            s.dc = dcP + b * N;
            s.du = duP + (t * B + b) * 4 * N;
            s.dpre = dpreP + b * N;
            s.dug = dugP ? dugP + (t * B + b) * N : nullptr;
            s.dA = dAP + b * dA_size;
            s.deta = detaP + b;
            s.dmw = dmwP + b * N;
            s.dmb = dmbP + b;
            s.dfw = dfwP + b * N;
            s.dfb = dfbP + b * N;
            s.mm = scratch.data();
            s.dpost = scratch.data() + N;
            s.dmm = scratch.data() + 2 * N;
            backward_step(isa, rule, p, s);
          }
          // dh_{t-1} = (trace and plastic-term parts) + du_t wh^T, for this block's rows.
          blocked_addmm(dh_next, dpre, du.select(0, t), wh_t, b0, b1);
        }
      }
    });
  });

  // dwh = sum_t h_{t-1}^T du_t: one GEMM over all steps and samples.
  const at::Tensor h_prev = at::cat({q.h0.unsqueeze(0), hC.narrow(0, 0, T_ - 1)});
  at::Tensor dwh = h_prev.reshape({T_ * B, N}).t().mm(du.reshape({T_ * B, 4 * N}));
  at::Tensor dalpha = alpha.dim() == 0 ? dA.sum() : dA.sum(0);
  // A fresh empty tensor per absent gradient: outputs of a custom op must not alias.
  at::Tensor deta = uses_eta(rule) ? deta_ps.sum() : none_like(h);
  at::Tensor dmw = modulated ? dmw_ps.sum(0) : none_like(h);
  at::Tensor dmb = modulated ? dmb_ps.sum() : none_like(h);
  at::Tensor dfw = fan ? dfw_ps.sum(0) : none_like(h);
  at::Tensor dfb = fan ? dfb_ps.sum(0) : none_like(h);
  if (dug.defined()) {  // u's adjoint: du without the drive's part in the candidate block
    du = du.clone();
    du.narrow(2, 2 * N, N).copy_(dug);
  }
  return {du, dwh, dalpha, dh_next, dc, dH, elig ? dE : none_like(h), deta, dmw, dmb, dfw, dfb};
}

}  // namespace

// Registered where defined (as plastic_rnn and plastic_step): no declaration to keep in step.
TORCH_LIBRARY_IMPL(hebbkern, CPU, m) {
  m.impl("plastic_lstm_fwd", &plastic_lstm_fwd_cpu);
  m.impl("plastic_lstm_bwd", &plastic_lstm_bwd_cpu);
}

}  // namespace hebbkern
