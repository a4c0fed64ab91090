// Schemas of hebbkern's custom ops and their per-device implementations. Fake (meta) kernels and
// autograd are registered from Python (hebbkern/ops/), next to the functional API.
#include <Python.h>
#include <torch/library.h>

#include "cpu/plastic_rnn_kernel_args.h"
#include "plastic_rnn.h"

namespace {
// _C.cpu_isa() -> str: the instruction set the CPU kernels run with (for benchmark reports).
PyObject* cpu_isa(PyObject*, PyObject*) {
  return PyUnicode_FromString(hebbkern::cpu::isa_name(hebbkern::cpu::active_isa()));
}

PyMethodDef methods[] = {
    {"cpu_isa", cpu_isa, METH_NOARGS, "Instruction set used by the CPU kernels."},
    {nullptr, nullptr, 0, nullptr},
};
}  // namespace

extern "C" {
// `import hebbkern._C` loads this library, which runs the TORCH_LIBRARY registrations below. Every
// kernel entry point goes through torch.ops.hebbkern; the module itself only reports build facts.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  return PyModule_Create(&module_def);
}
}

namespace hebbkern {

Rule parse_rule(const std::string& name) {
  if (name == "hebb") return Rule::Hebb;
  if (name == "oja") return Rule::Oja;
  if (name == "clip") return Rule::Clip;
  if (name == "neuromod") return Rule::Neuromod;
  if (name == "retro") return Rule::Retro;
  TORCH_CHECK_VALUE(false, "hebbkern: unknown rule '", name,
                    "' (expected one of hebb, oja, clip, neuromod, retro)");
}

TORCH_LIBRARY(hebbkern, m) {
  m.def(
      "plastic_rnn_fwd(Tensor u, Tensor w, Tensor alpha, Tensor? h0, Tensor? hebb0, Tensor? elig0, "
      "Tensor? clamp_mask, Tensor? eta, Tensor? mod_w, Tensor? mod_b, Tensor? fanout_w, "
      "Tensor? fanout_b, str rule, float clip, int ckpt_every) "
      "-> (Tensor h, Tensor hebb, Tensor elig, Tensor hebb_ckpt, Tensor elig_ckpt, Tensor mod)");
  m.def(
      "plastic_rnn_bwd(Tensor? grad_h, Tensor? grad_hebb, Tensor? grad_elig, Tensor u, Tensor w, "
      "Tensor alpha, Tensor? h0, Tensor h, Tensor hebb_ckpt, Tensor elig_ckpt, Tensor mod, "
      "Tensor? clamp_mask, Tensor? eta, Tensor? mod_w, Tensor? mod_b, Tensor? fanout_w, "
      "Tensor? fanout_b, str rule, float clip, int ckpt_every) "
      "-> (Tensor du, Tensor dw, Tensor dalpha, Tensor dh0, Tensor dhebb0, Tensor delig0, "
      "Tensor deta, Tensor dmod_w, Tensor dmod_b, Tensor dfanout_w, Tensor dfanout_b)");
}

TORCH_LIBRARY_IMPL(hebbkern, CPU, m) {
  m.impl("plastic_rnn_fwd", &plastic_rnn_fwd_cpu);
  m.impl("plastic_rnn_bwd", &plastic_rnn_bwd_cpu);
}

}  // namespace hebbkern
