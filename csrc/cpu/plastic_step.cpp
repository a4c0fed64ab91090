// Torch-facing side of the CPU plastic_step kernels: shape checks (the raw torch.ops are safe to
// call), argument preparation, output allocation, the work split over threads (whole samples, or
// the rows of one sample when the batch is small: see run_forward) and the run-time
// instruction-set choice, and the final reductions (group slices of dw and d alpha;
// per-sample accumulators and per-chunk partials summed in a fixed order). The kernels are in
// plastic_step_kernel.cpp; the threads come from helping_for (why not at::parallel_for: there).
#include "../plastic_step.h"

#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <vector>

#include "helping_for.h"
#include "plastic_step_kernel_args.h"

namespace hebbkern {

namespace {

using cpu::StepArgs;

using cpu::StepPhase;
using cpu::StepPhaseArgs;

template <typename T>
void run_phase(const StepPhaseArgs<T>& a) {
  HEBBKERN_CPU_DISPATCH(a.isa, cpu, step_phase, a)
}

bool given(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return given(t) ? t->contiguous() : at::Tensor();
}

template <typename T>
T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// `t` must have `ref`'s dtype and exactly `shape`; `what` names it in the error.
void check_shape(const at::Tensor& t, const at::Tensor& ref, at::IntArrayRef shape,
                 const char* what) {
  TORCH_CHECK_VALUE(t.sizes() == shape, "hebbkern::plastic_step: ", what, " must have shape ",
                    shape, ", got ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), "hebbkern::plastic_step: ", what,
                   " must have dtype ", ref.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == ref.device(), "hebbkern::plastic_step: ", what,
                    " must be on the device of u");
}

// The value of a one-element float/double tensor of the CPU, read in place (item() dispatches:
// microseconds per call on a path that runs once per agent step).
double scalar_value(const at::Tensor& t) {
  if (!t.is_cpu()) return t.item<double>();
  return t.scalar_type() == at::kDouble ? *t.const_data_ptr<double>()
                                        : static_cast<double>(*t.const_data_ptr<float>());
}

void check_scalar(const std::optional<at::Tensor>& t, const at::Tensor& ref, const char* what) {
  TORCH_CHECK_VALUE(t->numel() == 1, "hebbkern::plastic_step: ", what, " must have one element");
  TORCH_CHECK_TYPE(t->scalar_type() == ref.scalar_type(), "hebbkern::plastic_step: ", what,
                   " must have dtype ", ref.scalar_type());
}

// Shared by forward and backward: the arguments checked, made contiguous, scalars read.
struct Prepared {
  at::Tensor u, h, hebb, elig, w, A, clamp, mod_w, fan_w, fan_b;
  int64_t B = 0, N = 0, w_bstride = 0, a_stride = 0, a_bstride = 0;
  double eta = 0, mod_b = 0;
  bool eta_used = false;
};

Prepared prepare(const at::Tensor& u, const at::Tensor& h, const at::Tensor& hebb,
                 const std::optional<at::Tensor>& elig, const at::Tensor& w,
                 const at::Tensor& alpha, const std::optional<at::Tensor>& clamp_mask,
                 const std::optional<at::Tensor>& eta, const std::optional<at::Tensor>& mod_w,
                 const std::optional<at::Tensor>& mod_b, const std::optional<at::Tensor>& fanout_w,
                 const std::optional<at::Tensor>& fanout_b, Rule rule, double clip, bool post_pre,
                 int64_t variant) {
  TORCH_CHECK_VALUE(u.dim() == 2 && u.size(1) >= 1,
                    "hebbkern::plastic_step: u must be [B, N] with N >= 1, got ", u.sizes());
  TORCH_CHECK_TYPE(u.scalar_type() == at::kFloat || u.scalar_type() == at::kDouble,
                   "hebbkern::plastic_step: u must be float32 or float64, got ", u.scalar_type());
  TORCH_CHECK_VALUE(clip > 0, "hebbkern::plastic_step: clip must be > 0");
  Prepared p;
  const int64_t B = u.size(0), N = u.size(1);
  p.B = B;
  p.N = N;
  check_shape(h, u, {B, N}, "h");
  check_shape(hebb, u, {B, N, N}, "hebb");
  if (has_eligibility(rule)) {
    TORCH_CHECK_VALUE(given(elig), "hebbkern::plastic_step: rule 'retro' needs elig");
    check_shape(*elig, u, {B, N, N}, "elig");
  }
  if (w.dim() == 3) {
    check_shape(w, u, {B, N, N}, "w (per sample)");
    p.w_bstride = N * N;
  } else {
    check_shape(w, u, {N, N}, "w");
  }
  if (alpha.dim() == 3) {
    check_shape(alpha, u, {B, N, N}, "alpha (per sample)");
    p.a_stride = N;
    p.a_bstride = N * N;
  } else if (alpha.dim() == 2) {
    check_shape(alpha, u, {N, N}, "alpha");
    p.a_stride = N;
  } else if (alpha.dim() == 1) {
    check_shape(alpha, u, {N}, "alpha");
  } else {
    check_shape(alpha, u, {}, "alpha");
  }
  if (given(clamp_mask)) {
    TORCH_CHECK_VALUE(clamp_mask->sizes() == u.sizes(),
                      "hebbkern::plastic_step: clamp_mask must have the shape of u");
    p.clamp = clamp_mask->to(at::kBool).contiguous();
  }
  // Unmodulated neurons (SPEC.md section 1.1's n_modulated) follow the clipped rule with eta.
  p.eta_used = uses_eta(rule) || variant_unmodulated(variant) > 0;
  if (p.eta_used) {
    TORCH_CHECK_VALUE(given(eta), "hebbkern::plastic_step: this rule needs eta");
    check_scalar(eta, u, "eta");
    p.eta = scalar_value(*eta);
  }
  if (is_modulated(rule)) {
    TORCH_CHECK_VALUE(given(mod_w), "hebbkern::plastic_step: this rule needs mod_w");
    check_shape(*mod_w, u, {N}, "mod_w");
    p.mod_w = mod_w->contiguous();
    if (given(mod_b)) {
      check_scalar(mod_b, u, "mod_b");
      p.mod_b = scalar_value(*mod_b);
    }
    TORCH_CHECK_VALUE(given(fanout_w) == given(fanout_b),
                      "hebbkern::plastic_step: fanout_w and fanout_b go together");
    if (given(fanout_w)) {
      check_shape(*fanout_w, u, {N}, "fanout_w");
      check_shape(*fanout_b, u, {N}, "fanout_b");
      p.fan_w = fanout_w->contiguous();
      p.fan_b = fanout_b->contiguous();
    }
  }
  p.u = u.contiguous();
  p.h = h.contiguous();
  p.hebb = hebb.contiguous();
  if (has_eligibility(rule)) p.elig = elig->contiguous();
  p.w = w.contiguous();
  // Per-neuron and scalar alpha become one shared row (row stride 0), as in plastic_rnn. In the
  // post_pre layout a row is one post neuron, so per-neuron alpha is constant along a row: it is
  // expanded to [N, N] (a copy of alpha, not of the trace), and its gradient summed back.
  if (alpha.dim() >= 2) {
    p.A = alpha.contiguous();
  } else if (post_pre) {
    p.A = alpha.expand({N}).unsqueeze(1).expand({N, N}).contiguous();
    p.a_stride = N;
  } else {
    p.A = alpha.expand({N}).contiguous();
  }
  return p;
}

// Designated initialisers: a field added to StepArgs cannot be silently left unset.
template <typename T>
StepArgs<T> make_args(const Prepared& q, double clip, int64_t variant) {
  return {.B = q.B,
          .N = q.N,
          .u = q.u.data_ptr<T>(),
          .h = q.h.data_ptr<T>(),
          .hebb = q.hebb.data_ptr<T>(),
          .elig = ptr_or_null<T>(q.elig),
          .w = q.w.data_ptr<T>(),
          .w_bstride = q.w_bstride,
          .A = q.A.data_ptr<T>(),
          .a_stride = q.a_stride,
          .a_bstride = q.a_bstride,
          .clamp = q.clamp.defined() ? q.clamp.data_ptr<bool>() : nullptr,
          .mod_w = ptr_or_null<T>(q.mod_w),
          .fan_w = ptr_or_null<T>(q.fan_w),
          .fan_b = ptr_or_null<T>(q.fan_b),
          .eta = static_cast<T>(q.eta),
          .mod_b = static_cast<T>(q.mod_b),
          .clip = static_cast<T>(clip),
          .act = variant_act(variant),
          .squash = variant_squash(variant),
          .n_unmod = variant_unmodulated(variant)};
}

at::Tensor none_like(const at::Tensor& ref) { return at::empty({0}, ref.options()); }

// The sum of the [G, N, N] group slices, in slice order, on the calling thread: at most 8 slices,
// cheaper than another parallel region.
at::Tensor sum_slices(const at::Tensor& slices) {
  const int64_t G = slices.size(0), NN = slices.size(1) * slices.size(2);
  if (G == 0) return at::zeros({slices.size(1), slices.size(2)}, slices.options());  // B = 0
  at::Tensor out = at::empty({slices.size(1), slices.size(2)}, slices.options());
  AT_DISPATCH_FLOATING_TYPES(slices.scalar_type(), "plastic_step_sum_slices", [&] {
    const scalar_t* s = slices.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    std::copy(s, s + NN, o);
    for (int64_t g = 1; g < G; ++g)
      for (int64_t k = 0; k < NN; ++k) o[k] += s[g * NN + k];
  });
  return out;
}

// The per-sample partials [B] or [B, N] summed over the batch (b in order) on the calling thread:
// B * N adds, where each ATen sum cost a dispatch (about 1 us; a small step's backward went from
// 13 to 11 us without the two of neuromod, NOTES.md P10).
at::Tensor sum_samples(const at::Tensor& ps) {
  // n from the shape, not numel / B: with B = 0 the sums are zeros of the full size.
  const int64_t B = ps.size(0), n = ps.dim() == 1 ? 1 : ps.size(1);
  at::Tensor out = ps.dim() == 1 ? at::empty({}, ps.options()) : at::empty({n}, ps.options());
  AT_DISPATCH_FLOATING_TYPES(ps.scalar_type(), "plastic_step_sum_samples", [&] {
    const scalar_t* s = ps.const_data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    std::fill(o, o + n, scalar_t(0));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < n; ++k) o[k] += s[b * n + k];
  });
  return out;
}

// Samples per task: handing a task to another thread costs microseconds (and much more when the
// cores are shared with other work), which one step of a small network does not repay; ATen's
// grain size is the rule, counted in trace elements.
int64_t sample_grain(int64_t N) { return std::max<int64_t>(1, at::internal::GRAIN_SIZE / (N * N)); }

// The row split: a batch this small (and a network this large) cuts each sample's rows into fixed
// chunks of about a grain of trace elements, so that B = 1 uses every thread. The choice and the
// chunks depend on the shape only, never on the thread count, so results do not either.
constexpr int64_t kRowSplitMaxBatch = 4;
bool row_split(int64_t B, int64_t N) {
  return B > 0 && B < kRowSplitMaxBatch && N * N >= 2 * at::internal::GRAIN_SIZE;
}
int64_t chunk_rows(int64_t N) {
  return std::max<int64_t>(8, (at::internal::GRAIN_SIZE + N - 1) / N);
}

// Per-thread buffers of [N] vectors, kept between calls (no allocation per step).
template <typename T>
T* thread_buffer(int64_t size) {
  thread_local std::vector<T> buf;
  if (static_cast<int64_t>(buf.size()) < size) buf.resize(size);
  return buf.data();
}

template <typename T>
StepPhaseArgs<T> phase_args(cpu::Isa isa, StepPhase ph, Rule rule, bool pp, const StepArgs<T>& p,
                            int64_t b) {
  StepPhaseArgs<T> a{};
  a.isa = isa;
  a.phase = ph;
  a.rule = rule;
  a.post_pre = pp;
  a.p = &p;
  a.b = b;
  a.r0 = 0;
  a.r1 = p.N;
  return a;
}

// m_t of sample b from its saved neuromodulator (zeros for the rules without one).
template <typename T>
void modulation(Rule rule, const StepArgs<T>& p, const T* mod, int64_t b, T* M) {
  const int64_t N = p.N;
  if (!is_modulated(rule)) {
    std::fill(M, M + N, T(0));
    return;
  }
  const T s = mod[b];
  // The last p.n_unmod neurons are not modulated (SPEC.md section 1.1): their m_t is eta.
  const int64_t n_mod = N - p.n_unmod;
  for (int64_t j = 0; j < n_mod; ++j) M[j] = p.fan_w ? p.fan_w[j] * s + p.fan_b[j] : s;
  for (int64_t j = n_mod; j < N; ++j) M[j] = p.eta;
}

template <typename T>
void run_forward(Rule rule, bool pp, const StepArgs<T>& p, const cpu::StepFwdOut<T>& o) {
  const int64_t B = p.B, N = p.N;
  const cpu::Isa isa = cpu::active_isa();
  if (row_split(B, N)) {
    const int64_t rows = chunk_rows(N), C = (N + rows - 1) / rows;
    std::vector<T> buf((C + 2) * N);
    T* acc = buf.data() + C * N;
    T* M = acc + N;
    for (int64_t b = 0; b < B; ++b) {
      StepPhaseArgs<T> a = phase_args(isa, StepPhase::FwdMatvec, rule, pp, p, b);
      a.fo = &o;
      cpu::helping_for(C, [&](int64_t c) {
        StepPhaseArgs<T> ac = a;
        ac.r0 = c * rows;
        ac.r1 = std::min(N, ac.r0 + rows);
        ac.col0 = pp ? acc : buf.data() + c * N;
        run_phase(ac);
      });
      const T* u = p.u + b * N;
      for (int64_t j = 0; j < N; ++j) {
        T s = pp ? acc[j] : T(0);
        if (!pp)
          for (int64_t c = 0; c < C; ++c) s += buf[c * N + j];
        acc[j] = u[j] + s;
      }
      a.phase = StepPhase::FwdFinish;
      a.col0 = acc;
      a.M = M;
      run_phase(a);
      a.phase = StepPhase::FwdUpdate;
      cpu::helping_for(C, [&](int64_t c) {
        StepPhaseArgs<T> ac = a;
        ac.r0 = c * rows;
        ac.r1 = std::min(N, ac.r0 + rows);
        run_phase(ac);
      });
    }
    return;
  }
  const int64_t grain = sample_grain(N), tasks = (B + grain - 1) / grain;
  auto task = [&](int64_t t) {
    T* acc = thread_buffer<T>(2 * N);
    T* M = acc + N;
    for (int64_t b = t * grain; b < std::min(B, (t + 1) * grain); ++b) {
      StepPhaseArgs<T> a = phase_args(isa, StepPhase::FwdMatvec, rule, pp, p, b);
      a.fo = &o;
      a.col0 = acc;
      a.M = M;
      run_phase(a);
      const T* u = p.u + b * N;
      for (int64_t j = 0; j < N; ++j) acc[j] += u[j];
      a.phase = StepPhase::FwdFinish;
      run_phase(a);
      a.phase = StepPhase::FwdUpdate;
      run_phase(a);
    }
  };
  cpu::helping_for(tasks, task);
}

// Backward of samples [b0, b1) (or of one sample's rows, split over threads): pass A, the
// modulator and drive adjoints, pass B; the partials of pass A and B summed in chunk order.
template <typename T>
void backward_sample(cpu::Isa isa, Rule rule, bool pp, const StepArgs<T>& p,
                     const cpu::StepBwdIn<T>& in, const cpu::StepBwdOut<T>& o, int64_t b, int64_t C,
                     int64_t rows, T* buf, bool split) {
  const int64_t N = p.N;
  // buf: C chunks of [2N + 1] (col0, col1, scal), then M, post_adj, dM.
  const int64_t stride = 2 * N + 1;
  T* M = buf + C * stride;
  T* post_adj = M + N;
  T* dM = post_adj + N;
  modulation(rule, p, in.mod, b, M);
  StepPhaseArgs<T> a = phase_args(isa, StepPhase::BwdTrace, rule, pp, p, b);
  a.bi = &in;
  a.bo = &o;
  a.M = M;
  a.post_adj = post_adj;
  a.dM = dM;
  auto chunked = [&](StepPhaseArgs<T> base) {
    auto one = [&](int64_t c) {
      StepPhaseArgs<T> ac = base;
      ac.r0 = c * rows;
      ac.r1 = std::min(N, ac.r0 + rows);
      ac.col0 = buf + c * stride;
      ac.col1 = ac.col0 + N;
      ac.scal = ac.col0 + 2 * N;
      run_phase(ac);
    };
    if (split)
      cpu::helping_for(C, one);
    else
      for (int64_t c = 0; c < C; ++c) one(c);
  };
  chunked(a);
  const T* gh = in.gh ? in.gh + b * N : nullptr;
  T* dh = o.dh + b * N;
  T deta = 0;
  for (int64_t c = 0; c < C; ++c) deta += buf[c * stride + 2 * N];
  o.deta[b] = deta;
  if (!pp) {
    for (int64_t j = 0; j < N; ++j) {
      T s = gh ? gh[j] : T(0), m = 0;
      for (int64_t c = 0; c < C; ++c) {
        s += buf[c * stride + j];
        m += buf[c * stride + N + j];
      }
      post_adj[j] = s;
      dM[j] = m;
    }
  } else {
    for (int64_t j = 0; j < N; ++j) {
      if (gh) post_adj[j] += gh[j];
      T s = 0;
      for (int64_t c = 0; c < C; ++c) s += buf[c * stride + j];
      dh[j] = s;
    }
  }
  a.phase = StepPhase::BwdFinish;
  run_phase(a);
  a.phase = StepPhase::BwdMatvec;
  chunked(a);
  const bool per_connection = p.a_stride != 0;
  if (pp) {
    for (int64_t i = 0; i < N; ++i)
      for (int64_t c = 0; c < C; ++c) dh[i] += buf[c * stride + i];
  } else if (!per_connection) {
    T* dA = o.dA + b * N;
    for (int64_t j = 0; j < N; ++j) {
      T s = 0;
      for (int64_t c = 0; c < C; ++c) s += buf[c * stride + j];
      dA[j] = s;
    }
  }
}

template <typename T>
void run_backward(Rule rule, bool pp, const StepArgs<T>& p, const cpu::StepBwdIn<T>& in,
                  const cpu::StepBwdOut<T>& o, int64_t group, int64_t n_groups) {
  const int64_t B = p.B, N = p.N;
  const cpu::Isa isa = cpu::active_isa();
  if (row_split(B, N)) {
    const int64_t rows = chunk_rows(N), C = (N + rows - 1) / rows;
    std::vector<T> buf(C * (2 * N + 1) + 3 * N);
    for (int64_t b = 0; b < B; ++b)
      backward_sample(isa, rule, pp, p, in, o, b, C, rows, buf.data(), true);
    return;
  }
  // Split by groups, so that a group of samples summing into one d alpha slice stays on one
  // thread.
  const int64_t grain = std::max<int64_t>(1, sample_grain(N) / group);
  const int64_t tasks = (n_groups + grain - 1) / grain;
  cpu::helping_for(tasks, [&](int64_t t) {
    T* buf = thread_buffer<T>(5 * N + 1);
    const int64_t b0 = t * grain * group, b1 = std::min(B, (t + 1) * grain * group);
    for (int64_t b = b0; b < b1; ++b) backward_sample(isa, rule, pp, p, in, o, b, 1, N, buf, false);
  });
}

}  // namespace

namespace {

// The ops plastic_step_fwd/bwd (post_pre false) and plastic_step_fwd/bwd_post_pre (true): w, alpha
// and the traces stored [post, pre]; the kernels read that layout where it lies.
template <bool post_pre>
StepFwdOut step_fwd(const at::Tensor& u, const at::Tensor& h, const at::Tensor& hebb,
                    const std::optional<at::Tensor>& elig, const at::Tensor& w,
                    const at::Tensor& alpha, const std::optional<at::Tensor>& clamp_mask,
                    const std::optional<at::Tensor>& eta, const std::optional<at::Tensor>& mod_w,
                    const std::optional<at::Tensor>& mod_b,
                    const std::optional<at::Tensor>& fanout_w,
                    const std::optional<at::Tensor>& fanout_b, const std::string& rule_name,
                    double clip, int64_t variant) {
  const Rule rule = parse_rule(rule_name, variant, u.dim() == 2 ? u.size(1) : 0);
  const Prepared q = prepare(u, h, hebb, elig, w, alpha, clamp_mask, eta, mod_w, mod_b, fanout_w,
                             fanout_b, rule, clip, post_pre, variant);
  const int64_t B = q.B, N = q.N;
  const auto opts = u.options();
  at::Tensor h_new = at::empty({B, N}, opts);
  at::Tensor hebb_new = at::empty({B, N, N}, opts);
  at::Tensor elig_new = has_eligibility(rule) ? at::empty({B, N, N}, opts) : none_like(u);
  at::Tensor mod = is_modulated(rule) ? at::empty({B}, opts) : none_like(u);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "plastic_step_fwd_cpu", [&] {
    using T = scalar_t;
    const StepArgs<T> p = make_args<T>(q, clip, variant);
    const cpu::StepFwdOut<T> o{.h_new = h_new.data_ptr<T>(),
                               .hebb_new = hebb_new.data_ptr<T>(),
                               .elig_new = ptr_or_null<T>(elig_new),
                               .mod = ptr_or_null<T>(mod)};
    run_forward(rule, post_pre, p, o);
  });
  return {h_new, hebb_new, elig_new, mod};
}

template <bool post_pre>
StepBwdOut step_bwd(
    const std::optional<at::Tensor>& grad_h, const std::optional<at::Tensor>& grad_hebb,
    const std::optional<at::Tensor>& grad_elig, const at::Tensor& u, const at::Tensor& h,
    const at::Tensor& hebb, const std::optional<at::Tensor>& elig, const at::Tensor& w,
    const at::Tensor& alpha, const at::Tensor& h_new, const at::Tensor& mod,
    const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
    const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
    const std::optional<at::Tensor>& fanout_w, const std::optional<at::Tensor>& fanout_b,
    const std::string& rule_name, double clip, int64_t variant) {
  const Rule rule = parse_rule(rule_name, variant, u.dim() == 2 ? u.size(1) : 0);
  const Prepared q = prepare(u, h, hebb, elig, w, alpha, clamp_mask, eta, mod_w, mod_b, fanout_w,
                             fanout_b, rule, clip, post_pre, variant);
  const int64_t B = q.B, N = q.N;
  const bool retro = has_eligibility(rule), modulated = is_modulated(rule);
  const bool fan = q.fan_w.defined();
  check_shape(h_new, u, {B, N}, "h_new");
  if (modulated) check_shape(mod, u, {B}, "mod");
  if (given(grad_h)) check_shape(*grad_h, u, {B, N}, "grad_h");
  if (given(grad_hebb)) check_shape(*grad_hebb, u, {B, N, N}, "grad_hebb");
  if (retro && given(grad_elig)) check_shape(*grad_elig, u, {B, N, N}, "grad_elig");
  const auto opts = u.options();
  at::Tensor gh = contiguous_or_undefined(grad_h);
  // Absent trace adjoints as zeros: the kernel reads them in place (plastic_step_kernel.cpp).
  at::Tensor gH = given(grad_hebb) ? grad_hebb->contiguous() : at::zeros({B, N, N}, opts);
  at::Tensor gE = !retro             ? at::Tensor()
                  : given(grad_elig) ? grad_elig->contiguous()
                                     : at::zeros({B, N, N}, opts);
  at::Tensor hn = h_new.contiguous(), mod_c = mod.contiguous();

  // Per connection also when post_pre expanded a per-neuron or scalar alpha (prepare).
  const bool per_connection = q.a_stride != 0;
  // Shared per-connection alpha and shared w: their gradients are summed per group of samples
  // (see StepBwdOut::dA), at most kMaxGroups slices instead of [B, N, N] buffers, and the slices
  // are added up on this thread.
  constexpr int64_t kMaxGroups = 8;
  const bool shared_w = w.dim() == 2, shared_A = per_connection && alpha.dim() != 3;
  // At least 1: with B = 0 there are no groups, and n_groups below divides by it.
  const int64_t group =
      (shared_w || shared_A) ? std::max<int64_t>(1, (B + kMaxGroups - 1) / kMaxGroups) : 1;
  const int64_t n_groups = (B + group - 1) / group;
  at::Tensor du = at::empty({B, N}, opts), dh = at::empty({B, N}, opts);
  at::Tensor da = at::empty({B, N}, opts);
  at::Tensor dH = at::empty({B, N, N}, opts);
  at::Tensor dE = retro ? at::empty({B, N, N}, opts) : none_like(u);
  // One group: the kernel's single slice is the gradient itself (no copy by sum_slices).
  auto slices = [&](bool shared) {
    return shared && n_groups == 1 ? at::empty({N, N}, opts)
                                   : at::empty({shared ? n_groups : B, N, N}, opts);
  };
  at::Tensor dA = per_connection ? slices(shared_A) : at::empty({B, N}, opts);
  at::Tensor dW = slices(shared_w);
  at::Tensor deta_ps = at::empty({B}, opts);
  at::Tensor dmw_ps = modulated ? at::empty({B, N}, opts) : at::Tensor();
  at::Tensor dmb_ps = modulated ? at::empty({B}, opts) : at::Tensor();
  at::Tensor dfw_ps = fan ? at::empty({B, N}, opts) : at::Tensor();
  at::Tensor dfb_ps = fan ? at::empty({B, N}, opts) : at::Tensor();

  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "plastic_step_bwd_cpu", [&] {
    using T = scalar_t;
    const StepArgs<T> p = make_args<T>(q, clip, variant);
    const cpu::StepBwdIn<T> in{.gh = ptr_or_null<T>(gh),
                               .gH = ptr_or_null<T>(gH),
                               .gE = ptr_or_null<T>(gE),
                               .h_new = hn.data_ptr<T>(),
                               .mod = ptr_or_null<T>(mod_c)};
    const cpu::StepBwdOut<T> o{.du = du.data_ptr<T>(),
                               .dh = dh.data_ptr<T>(),
                               .dH = dH.data_ptr<T>(),
                               .dE = ptr_or_null<T>(dE),
                               .da = da.data_ptr<T>(),
                               .dA = dA.data_ptr<T>(),
                               .dA_group = shared_A ? group : 1,
                               .dW = dW.data_ptr<T>(),
                               .dW_group = shared_w ? group : 1,
                               .deta = deta_ps.data_ptr<T>(),
                               .dmw = ptr_or_null<T>(dmw_ps),
                               .dmb = ptr_or_null<T>(dmb_ps),
                               .dfw = ptr_or_null<T>(dfw_ps),
                               .dfb = ptr_or_null<T>(dfb_ps)};
    run_backward(rule, post_pre, p, in, o, group, n_groups);
  });

  at::Tensor dw = shared_w && dW.dim() == 3 ? sum_slices(dW) : dW;
  at::Tensor dalpha;
  if (alpha.dim() == 3)
    dalpha = dA;
  else if (per_connection)
    dalpha = dA.dim() == 3 ? sum_slices(dA)
                           : dA;  // [N, N]; post_pre's expanded per-neuron alpha: summed below
  else
    dalpha = dA;  // [B, N]
  if (alpha.dim() == 1)
    dalpha = per_connection ? dalpha.sum(1) : dalpha.sum(0);
  else if (alpha.dim() == 0)
    dalpha = dalpha.sum();
  // A fresh empty tensor per absent gradient: outputs of a custom op must not alias each other.
  at::Tensor deta = q.eta_used ? sum_samples(deta_ps) : none_like(u);
  at::Tensor dmw = modulated ? sum_samples(dmw_ps) : none_like(u);
  at::Tensor dmb = modulated ? sum_samples(dmb_ps) : none_like(u);
  at::Tensor dfw = fan ? sum_samples(dfw_ps) : none_like(u);
  at::Tensor dfb = fan ? sum_samples(dfb_ps) : none_like(u);
  return {du, dh, dH, dE, dw, dalpha, deta, dmw, dmb, dfw, dfb};
}

}  // namespace

TORCH_LIBRARY_IMPL(hebbkern, CPU, m) {
  m.impl("plastic_step_fwd", &step_fwd<false>);
  m.impl("plastic_step_bwd", &step_bwd<false>);
  m.impl("plastic_step_fwd_post_pre", &step_fwd<true>);
  m.impl("plastic_step_bwd_post_pre", &step_bwd<true>);
}

}  // namespace hebbkern
