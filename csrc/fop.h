// Declaration of the fused FOP optimiser step (SPEC.md section 5), shared by csrc/ops.cpp
// (registration) and csrc/cpu/fop.cpp. CUDA tensors take the device-generic torch path in
// hebbkern/optim/fop.py.
#pragma once

#include <torch/types.h>

#include <string>

namespace hebbkern {

// One FOP step of a whole parameter group, in place. Per parameter i: precond[i] is M [d, d] or an
// empty tensor (no preconditioning: the base optimiser); prev_dir[i] the previous direction kept
// for the hypergradient (preconditioned parameters of plain SGD and Adam; otherwise ignored);
// buf1[i] the momentum buffer or Adam's exp_avg (the list is empty for plain SGD); buf2[i] Adam's
// exp_avg_sq (empty list for SGD); steps[i] a 0-dim float32 CPU step count, incremented here.
void fop_step_cpu(at::TensorList params, at::TensorList grads, at::TensorList precond,
                  at::TensorList prev_dir, at::TensorList buf1, at::TensorList buf2,
                  at::TensorList steps, const std::string& base, double lr, double hyper_lr,
                  double momentum, double beta1, double beta2, double eps, double weight_decay);

}  // namespace hebbkern
