"""Builds hebbkern's one compiled extension, ``hebbkern._C``.

C++ sources (csrc/*.cpp, csrc/cpu/*.cpp) are always compiled. CUDA sources (csrc/cuda/*.cu) are
added whenever nvcc and a CUDA build of torch are present; no GPU is needed to compile them.

Environment switches:
  HEBBKERN_CUDA=auto|0|1   auto (default): CUDA when possible; 0: never; 1: required (error if not).
  TORCH_CUDA_ARCH_LIST     GPU architectures to compile for (default "8.0;9.0").
  HEBBKERN_CPU_FLAGS       extra C++ flags, e.g. "-march=native" for a machine-local build.
  MAX_JOBS                 parallel compile jobs (ninja).
"""

import glob
import os
import shlex

# torch locates the CUDA toolkit from `nvcc` on PATH; where nvcc is a link outside the toolkit
# (/usr/local/bin/nvcc here), that guess misses the toolkit's libraries. The standard location
# wins unless the caller says otherwise. Must run before torch.utils.cpp_extension is imported.
if not os.environ.get("CUDA_HOME") and not os.environ.get("CUDA_PATH"):
    if os.path.isdir("/usr/local/cuda/lib64"):
        os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402
from setuptools import setup  # noqa: E402
from torch.utils.cpp_extension import (  # noqa: E402
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
)

ROOT = os.path.dirname(os.path.abspath(__file__))


def rel(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def want_cuda(cuda_sources: list[str]) -> bool:
    mode = os.environ.get("HEBBKERN_CUDA", "auto").lower()
    possible = torch.version.cuda is not None and CUDA_HOME is not None
    if mode in ("0", "false", "off"):
        return False
    if mode in ("1", "true", "on"):
        if not possible:
            raise RuntimeError("HEBBKERN_CUDA=1 but nvcc or a CUDA build of torch is missing")
        return True
    return possible and bool(cuda_sources)


def extension():
    cpp_sources = rel("csrc/*.cpp") + rel("csrc/cpu/*.cpp")
    cuda_sources = rel("csrc/cuda/*.cu")
    # py_limited_api=True below makes torch define Py_LIMITED_API (one abi3 wheel per platform).
    cxx = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
    cxx += shlex.split(os.environ.get("HEBBKERN_CPU_FLAGS", ""))
    common = dict(
        name="hebbkern._C",
        include_dirs=[os.path.join(ROOT, "csrc", "include"), os.path.join(ROOT, "csrc")],
        extra_link_args=["-fopenmp"],
        py_limited_api=True,
    )
    if want_cuda(cuda_sources):
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        # No --use_fast_math: it turns tanhf into tanh.approx.f32 (relative error ~5e-4), which the
        # float32 tolerance against the reference (1e-4) does not allow.
        nvcc = ["-O3", "-lineinfo", "-Xptxas", "-v"]
        return CUDAExtension(
            sources=cpp_sources + cuda_sources,
            extra_compile_args={"cxx": cxx + ["-DHEBBKERN_WITH_CUDA"], "nvcc": nvcc},
            **common,
        )
    return CppExtension(sources=cpp_sources, extra_compile_args={"cxx": cxx}, **common)


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
