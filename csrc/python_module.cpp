// The Python module `hebbkern._C`. Importing it loads this shared library, whose static
// initialisers run the TORCH_LIBRARY registrations of ops.cpp. Every kernel entry point goes
// through torch.ops.hebbkern; the module itself only reports build facts. Built only by setup.py.
#include <Python.h>

#include "cpu/isa.h"

namespace {

// _C.cpu_isa() -> str: the instruction set the CPU kernels run with (for benchmark reports).
PyObject* cpu_isa(PyObject*, PyObject*) {
  return PyUnicode_FromString(hebbkern::cpu::isa_name(hebbkern::cpu::active_isa()));
}

// _C.with_cuda() -> bool: whether CUDA sources were compiled into this build.
PyObject* with_cuda(PyObject*, PyObject*) {
#ifdef HEBBKERN_WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

PyMethodDef methods[] = {
    {"cpu_isa", cpu_isa, METH_NOARGS, "Instruction set used by the CPU kernels."},
    {"with_cuda", with_cuda, METH_NOARGS, "Whether CUDA sources were compiled in."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  return PyModule_Create(&module_def);
}
