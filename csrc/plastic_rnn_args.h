// Torch-facing helpers shared by every implementation of the plastic_rnn ops (the CPU kernels,
// the CUDA kernels and their CPU emulation): argument checks of the raw ops, the prepared
// (contiguous) arguments, and the batch reductions that end the backward pass.
#pragma once

#include <torch/types.h>

#include <optional>

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
  double eta_value = 0, mod_b_value = 0;
};

// Checks every argument against u (shape, dtype, device) and prepares them. `read_scalars`: also
// read eta and mod_b on the host (the CPU kernels take them by value).
Prepared prepare(const at::Tensor& u, const at::Tensor& w, const at::Tensor& alpha,
                 const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& hebb0,
                 const std::optional<at::Tensor>& elig0,
                 const std::optional<at::Tensor>& clamp_mask, const std::optional<at::Tensor>& eta,
                 const std::optional<at::Tensor>& mod_w, const std::optional<at::Tensor>& mod_b,
                 const std::optional<at::Tensor>& fanout_w,
                 const std::optional<at::Tensor>& fanout_b, Rule rule, double clip,
                 bool read_scalars);

// The saved forward outputs and the incoming gradients of the backward op, checked against u.
void check_backward_inputs(const std::optional<at::Tensor>& grad_h,
                           const std::optional<at::Tensor>& grad_hebb,
                           const std::optional<at::Tensor>& grad_elig, const at::Tensor& u,
                           const at::Tensor& h, const at::Tensor& hebb_ckpt,
                           const at::Tensor& elig_ckpt, const at::Tensor& mod, Rule rule,
                           int64_t ckpt_every);

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

// dw as one GEMM over all steps and samples, the per-sample accumulators summed over the batch in a
// fixed order (deterministic on every device), unused gradients as separate empty tensors.
BwdOut finish_backward(const Prepared& q, const at::Tensor& alpha, const at::Tensor& h, Rule rule,
                       const BwdAccumulators& acc);

}  // namespace hebbkern::rnn_args
