// Torch-facing helpers shared by every implementation of the plastic_rnn ops (the CPU kernels,
// the CUDA kernels and their CPU emulation): argument checks of the raw ops, the prepared
// (contiguous) arguments, and the batch reductions that end the backward pass.
#pragma once

#include <torch/types.h>

#include <optional>
#include <string>

#include "hebbkern/plastic_rnn_io.h"
#include "plastic_rnn.h"

namespace hebbkern::rnn_args {

at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t);

template <typename T>
T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

at::Tensor empty_like_opts(const at::Tensor& ref);

bool given(const std::optional<at::Tensor>& t);

// The raw ops (torch.ops.hebbkern.plastic_rnn_fwd/bwd) can be called without the Python checks of
// hebbkern/_validation.py, so every shape, dtype and device the kernels rely on is checked here
// too: no argument may make a kernel read or write out of bounds.
void check_arg(const char* name, const at::Tensor& t, const at::Tensor& u, at::IntArrayRef shape);
void check_opt(const char* name, const std::optional<at::Tensor>& t, const at::Tensor& u,
               at::IntArrayRef shape, bool used, const char* rules);

// The argument tensors made contiguous. eta and mod_b stay tensors (the CUDA kernels read them on
// the device, without a host sync); `eta_value`/`mod_b_value` are read only where asked.
struct Prepared {
  at::Tensor u, w, A, h0, hebb0, elig0, clamp, mod_w, fan_w, fan_b, eta, mod_b;
  double eta_value = 0, mod_b_value = 0;  // eta_value: shared eta only
  // See RnnInputs: alpha's row stride and the per-sample strides (0: shared by the batch).
  int64_t a_stride = 0, w_bstride = 0, a_bstride = 0, eta_bstride = 0;
};

// A tensor argument of the ops (Tensor and Tensor? in the schemas of csrc/ops.cpp).
using TensorArg = const at::Tensor&;
using OptTensorArg = const std::optional<at::Tensor>&;

// The plastic options of plastic_rnn's schemas (SPEC.md section 1.1), in schema order.
struct PlasticOptions {
  OptTensorArg clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b;
};

// The arguments of plastic_rnn_fwd and plastic_rnn_bwd (schema order), as every device's
// implementation receives them from fwd_entry/bwd_entry below.
struct FwdArgs {
  TensorArg u, w, alpha;
  OptTensorArg h0, hebb0, elig0;
  PlasticOptions opt;
  const std::string& rule;
  double clip;
  int64_t ckpt_every, variant;
};

struct BwdArgs {
  OptTensorArg grad_h, grad_hebb, grad_elig;
  TensorArg u, w, alpha;
  OptTensorArg h0;
  TensorArg h, hebb_ckpt, elig_ckpt, mod;
  PlasticOptions opt;
  const std::string& rule;
  double clip;
  int64_t ckpt_every, variant;
};

// The functions every device registers for the ops (m.impl): the schemas' parameter lists, written
// once, gathered into FwdArgs/BwdArgs for `impl`. `Extra`: the parameters a device's op adds before
// `variant` (the emulation's threads, smem_budget, reverse), passed to `impl` after the arguments.
template <auto impl, class... Extra>
FwdOut fwd_entry(TensorArg u, TensorArg w, TensorArg alpha, OptTensorArg h0, OptTensorArg hebb0,
                 OptTensorArg elig0, OptTensorArg clamp_mask, OptTensorArg eta, OptTensorArg mod_w,
                 OptTensorArg mod_b, OptTensorArg fanout_w, OptTensorArg fanout_b,
                 const std::string& rule, double clip, int64_t ckpt_every, Extra... extra,
                 int64_t variant) {
  const PlasticOptions opt{clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b};
  return impl(FwdArgs{u, w, alpha, h0, hebb0, elig0, opt, rule, clip, ckpt_every, variant},
              extra...);
}

template <auto impl, class... Extra>
BwdOut bwd_entry(OptTensorArg grad_h, OptTensorArg grad_hebb, OptTensorArg grad_elig, TensorArg u,
                 TensorArg w, TensorArg alpha, OptTensorArg h0, TensorArg h, TensorArg hebb_ckpt,
                 TensorArg elig_ckpt, TensorArg mod, OptTensorArg clamp_mask, OptTensorArg eta,
                 OptTensorArg mod_w, OptTensorArg mod_b, OptTensorArg fanout_w,
                 OptTensorArg fanout_b, const std::string& rule, double clip, int64_t ckpt_every,
                 Extra... extra, int64_t variant) {
  const PlasticOptions opt{clamp_mask, eta, mod_w, mod_b, fanout_w, fanout_b};
  return impl(BwdArgs{grad_h, grad_hebb, grad_elig, u, w, alpha, h0, h, hebb_ckpt, elig_ckpt, mod,
                      opt, rule, clip, ckpt_every, variant},
              extra...);
}

// The rule with the variant applied (parse_rule), and ckpt_every checked: the first checks of
// every implementation.
Rule checked_rule(const std::string& rule, int64_t variant, const at::Tensor& u,
                  int64_t ckpt_every);

// Checks every argument against u (shape, dtype, device) and prepares them. `read_scalars`: also
// read eta and mod_b on the host (the CPU kernels take them by value).
Prepared prepare(TensorArg u, TensorArg w, TensorArg alpha, OptTensorArg h0, OptTensorArg hebb0,
                 OptTensorArg elig0, const PlasticOptions& opt, Rule rule, double clip,
                 bool read_scalars, int64_t variant = 0);

// The backward's arguments: prepare() with the forward's initial states, which it does not take.
inline Prepared prepare(const BwdArgs& a, Rule rule, bool read_scalars) {
  return prepare(a.u, a.w, a.alpha, a.h0, std::nullopt, std::nullopt, a.opt, rule, a.clip,
                 read_scalars, a.variant);
}

// The kernels' common inputs over the prepared tensors; K is capped at T.
template <typename T>
void fill_inputs(RnnInputs<T>& p, const Prepared& q, double clip, int64_t K) {
  p.T_ = q.u.size(0);
  p.B = q.u.size(1);
  p.N = q.u.size(2);
  p.K = K < p.T_ ? K : p.T_;
  p.u = q.u.data_ptr<T>();
  p.w = q.w.data_ptr<T>();
  p.A = q.A.data_ptr<T>();
  p.a_stride = q.a_stride;
  p.w_bstride = q.w_bstride;
  p.a_bstride = q.a_bstride;
  p.eta_bstride = q.eta_bstride;
  p.h0 = ptr_or_null<T>(q.h0);
  p.hebb0 = ptr_or_null<T>(q.hebb0);
  p.elig0 = ptr_or_null<T>(q.elig0);
  p.clamp = q.clamp.defined() ? q.clamp.data_ptr<bool>() : nullptr;
  p.mod_w = ptr_or_null<T>(q.mod_w);
  p.fan_w = ptr_or_null<T>(q.fan_w);
  p.fan_b = ptr_or_null<T>(q.fan_b);
  p.clip = static_cast<T>(clip);
  p.inv_clip = T(1) / p.clip;
}

// The variant options of SPEC.md section 1.1 (the rule's soft clip is in the rule itself).
template <typename T>
void set_variant(RnnInputs<T>& p, int64_t variant) {
  p.act = variant_act(variant);
  p.squash = variant_squash(variant);
  p.n_unmod = variant_unmodulated(variant);
}

// The saved forward outputs and the incoming gradients of the backward op, checked against u.
void check_backward_inputs(const BwdArgs& a, Rule rule);

// The forward outputs (see FwdOut in plastic_rnn.h), uninitialised.
FwdOut allocate_forward(const at::Tensor& u, Rule rule, int64_t ckpt_every);

// Per-sample accumulators of the backward kernels (each of a kernel's blocks or threads writes its
// own sample's rows; unused ones are undefined).
struct BwdAccumulators {
  at::Tensor dA, deta, dmw, dmb, dfw, dfb;  // [B, ...]
  at::Tensor du, da, dh0, dH0, dE0;
};

BwdAccumulators allocate_backward(const Prepared& q, const at::Tensor& alpha, Rule rule,
                                  bool zeroed);

// The backward's tensor inputs made contiguous (grad_elig only for retro).
struct BwdInputs {
  at::Tensor gh, gH, gE, h, ck_h, ck_e, mod;
};
BwdInputs contiguous_backward_inputs(const BwdArgs& a, Rule rule);

// The kernels' pointer structs over these tensors (designated initialisers: a field added to the
// structs cannot be silently left null).
template <typename T>
RnnFwdOut<T> fwd_ptrs(const FwdOut& out) {
  const auto& [h, hebb_T, elig_T, ck_h, ck_e, mod] = out;
  return {.h = h.data_ptr<T>(),
          .hebb_T = hebb_T.data_ptr<T>(),
          .elig_T = ptr_or_null<T>(elig_T),
          .ck_h = ck_h.data_ptr<T>(),
          .ck_e = ptr_or_null<T>(ck_e),
          .mod = ptr_or_null<T>(mod)};
}

template <typename T>
RnnBwdIn<T> bwd_in_ptrs(const BwdInputs& in) {
  return {.gh = ptr_or_null<T>(in.gh),
          .gH = ptr_or_null<T>(in.gH),
          .gE = ptr_or_null<T>(in.gE),
          .h = in.h.data_ptr<T>(),
          .ck_h = in.ck_h.data_ptr<T>(),
          .ck_e = ptr_or_null<T>(in.ck_e),
          .mod = ptr_or_null<T>(in.mod)};
}

template <typename T>
RnnBwdOut<T> bwd_out_ptrs(const BwdAccumulators& a) {
  return {.dA = a.dA.data_ptr<T>(),
          .deta = a.deta.data_ptr<T>(),
          .dmw = ptr_or_null<T>(a.dmw),
          .dmb = ptr_or_null<T>(a.dmb),
          .dfw = ptr_or_null<T>(a.dfw),
          .dfb = ptr_or_null<T>(a.dfb),
          .du = a.du.data_ptr<T>(),
          .da = a.da.data_ptr<T>(),
          .dh0 = a.dh0.data_ptr<T>(),
          .dH0 = a.dH0.data_ptr<T>(),
          .dE0 = ptr_or_null<T>(a.dE0)};
}

// dw as one GEMM over all steps and samples, the per-sample accumulators summed over the batch in a
// fixed order (deterministic on every device), unused gradients as separate empty tensors. A
// per-sample parameter keeps its per-sample gradient (dw one GEMM per sample, no batch sum), in the
// canonical shape it was given in.
BwdOut finish_backward(const Prepared& q, const at::Tensor& alpha, const at::Tensor& h, Rule rule,
                       const BwdAccumulators& acc);

}  // namespace hebbkern::rnn_args
