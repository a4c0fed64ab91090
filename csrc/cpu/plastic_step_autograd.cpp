// The eager autograd of plastic_step on the CPU as a C++ autograd node (benchmarks/NOTES.md P7).
//
// hebbkern/ops/plastic_step.py registers the autograd of plastic_step_fwd(_post_pre) in Python
// (torch.library: what torch.compile, opcheck and functorch use). An eager agent loop pays for
// that Python per step: the forward's Function.apply and setup_context, and a Python backward node
// that unpacks 14 saved tensors and calls the backward op from Python. Here the same formula is
// a torch::autograd::Function: the forward calls the forward op below autograd and saves the
// same tensors, the backward calls the backward op from C++. Python reaches it through one op,
// hebbkern::_plastic_step_eager (the extension is an abi3 module, so no pybind), called only from
// plastic_step's eager path with grad enabled; it is not part of the public API.
//
// Mirrors the Python autograd exactly (`_setup_context` / `_backward` / `keep_given`): a gradient
// for every floating tensor input (autograd drops those not needed), elig's only for rule "retro",
// none for clamp_mask; the backward op called through the full dispatcher, so a create_graph
// backward behaves as the registered path's (the backward op has no autograd formula: PyTorch's
// autograd fallback warns).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <string>

#include "../plastic_step.h"

namespace hebbkern {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptTensor = std::optional<at::Tensor>;
using at::Tensor;

// The C++ signatures the CPU kernels are registered with (csrc/cpu/plastic_step.cpp): a typed
// dispatcher call must name exactly these.
using StepFwdSig = StepFwdOut(const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
                              const Tensor&, const Tensor&, const OptTensor&, const OptTensor&,
                              const OptTensor&, const OptTensor&, const OptTensor&,
                              const OptTensor&, const std::string&, double, int64_t);
using StepBwdSig = StepBwdOut(const OptTensor&, const OptTensor&, const OptTensor&, const Tensor&,
                              const Tensor&, const Tensor&, const OptTensor&, const Tensor&,
                              const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
                              const OptTensor&, const OptTensor&, const OptTensor&,
                              const OptTensor&, const OptTensor&, const std::string&, double,
                              int64_t);

template <typename Sig>
c10::TypedOperatorHandle<Sig> typed_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

// Looked up once (a schema lookup per step would cost microseconds).
const c10::TypedOperatorHandle<StepFwdSig>& fwd_op(bool post_pre) {
  static const auto pre_post = typed_op<StepFwdSig>("hebbkern::plastic_step_fwd");
  static const auto post = typed_op<StepFwdSig>("hebbkern::plastic_step_fwd_post_pre");
  return post_pre ? post : pre_post;
}

const c10::TypedOperatorHandle<StepBwdSig>& bwd_op(bool post_pre) {
  static const auto pre_post = typed_op<StepBwdSig>("hebbkern::plastic_step_bwd");
  static const auto post = typed_op<StepBwdSig>("hebbkern::plastic_step_bwd_post_pre");
  return post_pre ? post : pre_post;
}

// The forward's arguments, in order; the backward returns one gradient per argument.
enum Arg : int {
  kU,
  kH,
  kHebb,
  kElig,
  kW,
  kAlpha,
  kClampMask,
  kEta,
  kModW,
  kModB,
  kFanoutW,
  kFanoutB,
  kRule,
  kClip,
  kVariant,
  kPostPre,
  kNumArgs
};

bool floating(const Tensor& t) { return t.defined() && t.is_floating_point(); }
bool floating(const OptTensor& t) { return t.has_value() && floating(*t); }
Tensor or_undefined(const OptTensor& t) { return t.has_value() ? *t : Tensor(); }
OptTensor or_none(const Tensor& t) { return t.defined() ? OptTensor(t) : std::nullopt; }

struct PlasticStepEager : public torch::autograd::Function<PlasticStepEager> {
  static variable_list forward(AutogradContext* ctx, const Tensor& u, const Tensor& h,
                               const Tensor& hebb, const OptTensor& elig, const Tensor& w,
                               const Tensor& alpha, const OptTensor& clamp_mask,
                               const OptTensor& eta, const OptTensor& mod_w, const OptTensor& mod_b,
                               const OptTensor& fanout_w, const OptTensor& fanout_b,
                               const std::string& rule, double clip, int64_t variant,
                               bool post_pre) {
    StepFwdOut out;
    {
      // Straight to the kernel: below autograd, so not into the op's registered Python autograd.
      at::AutoDispatchBelowAutograd below;
      out = fwd_op(post_pre).call(u, h, hebb, elig, w, alpha, clamp_mask, eta, mod_w, mod_b,
                                  fanout_w, fanout_b, rule, clip, variant);
    }
    auto& [h_new, hebb_new, elig_new, mod] = out;
    // Outputs without a gradient reach the backward undefined (the backward op takes each one as
    // optional) instead of as zeros made per step: elig_new (all rules but retro) and mod never
    // get one in an agent loop (two zero tensors and a fill per step, NOTES P12).
    ctx->set_materialize_grads(false);
    // _setup_context's tensors, in its order (an absent optional saved as undefined).
    ctx->save_for_backward({u, h, hebb, or_undefined(elig), w, alpha, h_new, mod,
                            or_undefined(clamp_mask), or_undefined(eta), or_undefined(mod_w),
                            or_undefined(mod_b), or_undefined(fanout_w), or_undefined(fanout_b)});
    ctx->saved_data["rule"] = rule;
    ctx->saved_data["clip"] = clip;
    ctx->saved_data["variant"] = variant;
    ctx->saved_data["post_pre"] = post_pre;
    // Which inputs get a gradient (`differentiable` + elig for retro only, as _setup_context).
    int64_t given = 0;
    const bool flags[] = {floating(u),     floating(h),        floating(hebb),
                          rule == "retro", floating(w),        floating(alpha),
                          false,           floating(eta),      floating(mod_w),
                          floating(mod_b), floating(fanout_w), floating(fanout_b)};
    for (int i = 0; i < kRule; ++i)
      if (flags[i]) given |= int64_t{1} << i;
    ctx->saved_data["given"] = given;
    return {h_new, hebb_new, elig_new, mod};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const std::string rule = ctx->saved_data["rule"].toStringRef();
    const int64_t given = ctx->saved_data["given"].toInt();
    const bool post_pre = ctx->saved_data["post_pre"].toBool();
    auto has = [given](int i) { return (given >> i) & 1; };
    // Through the full dispatcher, as the Python backward's call: with create_graph the backward
    // op meets the same autograd fallback.
    auto [du, dh, dhebb, delig, dw, dalpha, deta, dmod_w, dmod_b, dfanout_w, dfanout_b] =
        bwd_op(post_pre).call(
            grads[0], grads[1], has(kElig) ? OptTensor(grads[2]) : std::nullopt, s[0], s[1], s[2],
            or_none(s[3]), s[4], s[5], s[6], s[7], or_none(s[8]), or_none(s[9]), or_none(s[10]),
            or_none(s[11]), or_none(s[12]), or_none(s[13]), rule,
            ctx->saved_data["clip"].toDouble(), ctx->saved_data["variant"].toInt());
    variable_list out(kNumArgs);
    const Tensor kernel[] = {du,       dh,   dhebb,  delig,  dw,        dalpha,
                             Tensor(), deta, dmod_w, dmod_b, dfanout_w, dfanout_b};
    for (int i = 0; i < kRule; ++i)
      if (has(i)) out[i] = kernel[i];
    return out;
  }
};

std::tuple<Tensor, Tensor, Tensor, Tensor> plastic_step_eager(
    const Tensor& u, const Tensor& h, const Tensor& hebb, const OptTensor& elig, const Tensor& w,
    const Tensor& alpha, const OptTensor& clamp_mask, const OptTensor& eta, const OptTensor& mod_w,
    const OptTensor& mod_b, const OptTensor& fanout_w, const OptTensor& fanout_b,
    c10::string_view rule, double clip, int64_t variant, bool post_pre) {
  variable_list out =
      PlasticStepEager::apply(u, h, hebb, elig, w, alpha, clamp_mask, eta, mod_w, mod_b, fanout_w,
                              fanout_b, std::string(rule), clip, variant, post_pre);
  return {out[0], out[1], out[2], out[3]};
}

}  // namespace

// Defined here, next to its only kernel: an internal op of plastic_step's eager path (see above).
// CompositeImplicitAutograd: the node is built at the autograd level, the forward op below it.
TORCH_LIBRARY_FRAGMENT(hebbkern, m) {
  m.def(
      "_plastic_step_eager(Tensor u, Tensor h, Tensor hebb, Tensor? elig, Tensor w, Tensor alpha, "
      "Tensor? clamp_mask, Tensor? eta, Tensor? mod_w, Tensor? mod_b, Tensor? fanout_w, "
      "Tensor? fanout_b, str rule, float clip, int variant, bool post_pre) "
      "-> (Tensor h_new, Tensor hebb_new, Tensor elig_new, Tensor mod)");
  m.impl("_plastic_step_eager", c10::DispatchKey::CompositeImplicitAutograd, &plastic_step_eager);
}

}  // namespace hebbkern
