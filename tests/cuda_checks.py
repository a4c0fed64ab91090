"""Ahead-of-time build of the CUDA kernels with nvcc, and their resource report.

Compiles every csrc/cuda/*.cu (they include no torch header) to a cubin per architecture with
``-Xptxas -v`` and the optimisation flags of setup.py, and parses ptxas's report: registers,
spill stores and loads, stack, and the static shared memory of every kernel. The kernels' dynamic
shared memory depends on N and is chosen at launch (plastic_rnn_block.h, ``place``).

    python tests/cuda_checks.py [OUT.txt]    writes the report (benchmarks/results/ keeps one)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "csrc" / "cuda").glob("*.cu"))
ARCHS = ("sm_80", "sm_90")
RULE_NAMES = ("hebb", "oja", "clip", "neuromod", "retro", "gated", "clip_soft", "neuromod_soft",
              "retro_soft")  # fmt: skip  # enum order of plastic_rules.h
# The flags setup.py gives nvcc (torch adds -std=c++20 and --expt-relaxed-constexpr).
NVCC_FLAGS = ["-std=c++20", "--expt-relaxed-constexpr", "-O3", "-lineinfo"]


def find_nvcc() -> str | None:
    for cand in (shutil.which("nvcc"), os.path.join(os.environ.get("CUDA_HOME", ""), "bin/nvcc"),
                 "/usr/local/cuda/bin/nvcc"):  # fmt: skip
        if cand and os.path.isfile(cand):
            return cand
    return None


@dataclass
class KernelResources:
    arch: str
    family: str  # plastic_rnn, trace_update
    kernel: str  # fwd, bwd, or fwd_cluster (plastic_rnn's forward over a thread-block cluster)
    rule: str
    dtype: str
    registers: int
    spill_stores: int
    spill_loads: int
    stack: int
    static_smem: int


def compile_report(arch: str, out_dir: Path) -> tuple[str, list[KernelResources]]:
    """Compiles every source for ``arch``; returns ptxas's output and the parsed kernels."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found")
    text, kernels = "", []
    for src in SOURCES:
        cmd = [nvcc, *NVCC_FLAGS, f"-arch={arch}", "-cubin", "-Xptxas", "-v",
               f"-I{ROOT / 'csrc' / 'include'}", f"-I{ROOT / 'csrc'}", "-o",
               str(out_dir / f"{src.stem}_{arch}.cubin"), str(src)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"nvcc failed on {src.name}:\n{proc.stderr[-4000:]}")
        text += proc.stderr
        kernels += parse_ptxas(arch, proc.stderr)
    return text, kernels


def parse_ptxas(arch: str, text: str) -> list[KernelResources]:
    kernels, cur, spill, stack = [], None, (0, 0), 0
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            k = re.search(r"(plastic_rnn|trace_update)_(fwd|bwd|fwd_cluster|bwd_cluster)"
                          r"_kernelILNS_4RuleE(\d)E([fd])", m.group(1))  # fmt: skip
            cur = None if k is None else (k.group(1), k.group(2), RULE_NAMES[int(k.group(3))],
                                          {"f": "float32", "d": "float64"}[k.group(4)])  # fmt: skip
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                      line)  # fmt: skip
        if m:
            stack, spill = int(m.group(1)), (int(m.group(2)), int(m.group(3)))
            continue
        m = re.search(r"Used (\d+) registers(.*)", line)
        if m and cur is not None:
            smem = re.search(r"(\d+) bytes smem", m.group(2))
            kernels.append(KernelResources(arch, *cur, int(m.group(1)), *spill, stack,
                                           int(smem.group(1)) if smem else 0))  # fmt: skip
            cur = None
    return kernels


def format_report(kernels: list[KernelResources]) -> str:
    head = "arch   family       kernel rule      dtype    registers spill_st spill_ld stack static_smem"
    lines = [head]
    for k in kernels:
        lines.append(f"{k.arch:6} {k.family:12} {k.kernel:6} {k.rule:9} {k.dtype:8} {k.registers:9} "
                     f"{k.spill_stores:8} {k.spill_loads:8} {k.stack:5} {k.static_smem:11}")  # fmt: skip
    return "\n".join(lines) + "\n"


# Shared memory one block may opt into (cudaDevAttrMaxSharedMemoryPerBlockOptin).
SMEM_BUDGET = {"sm_80": 163 * 1024, "sm_90": 227 * 1024}
THREADS = 512  # plastic_rnn's block size (csrc/cuda/plastic_rnn_launch.h)


def placement(N: int, K: int, elig: bool, backward: bool, arch: str, elem_bytes: int = 4):
    """(vec_in_smem, state_in_smem, smem_bytes, scratch elements per sample) of the plastic_rnn
    kernels, from the same C++ function the launch uses."""
    import torch

    import hebbkern  # noqa: F401  (loads the ops)

    return tuple(
        torch.ops.hebbkern._plastic_rnn_placement(
            N, K, elig, backward, THREADS, SMEM_BUDGET[arch], elem_bytes
        )
    )


def largest_n_on_chip(elig: bool, backward: bool, arch: str) -> int:
    """The largest N whose float32 trace (or adjoint) stays in shared memory."""
    return max(n for n in range(1, 1025) if placement(n, 1, elig, backward, arch)[1])


def format_placements() -> str:
    lines = ["", "plastic_rnn dynamic shared memory per block (float32, 512 threads, K = 10)",
             "arch   pass state      N  state_in_smem smem_bytes scratch_per_sample"]  # fmt: skip
    for arch in ARCHS:
        for backward in (False, True):
            for elig, what in ((False, "hebb"), (True, "hebb+elig")):
                for n in (64, 128, 256):
                    v, st, sb, sc = placement(n, 10, elig, backward, arch)[:4]
                    lines.append(f"{arch:6} {'bwd' if backward else 'fwd':4} {what:9} {n:4} "
                                 f"{bool(st)!s:13} {sb:10} {sc:18}")  # fmt: skip
                lines.append(f"{arch:6} {'bwd' if backward else 'fwd':4} {what:9} largest N on "
                             f"chip: {largest_n_on_chip(elig, backward, arch)}")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    import tempfile

    out = Path(argv[1]) if len(argv) > 1 else None
    kernels = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ARCHS:
            kernels += compile_report(arch, Path(tmp))[1]
    nvcc_version = subprocess.run([find_nvcc(), "--version"], capture_output=True, text=True)
    text = "# " + nvcc_version.stdout.strip().splitlines()[-1] + "\n" + format_report(kernels)
    text += format_placements()
    if out:
        out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
