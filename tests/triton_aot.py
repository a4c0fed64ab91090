"""Ahead-of-time compilation of Triton kernels for real GPUs on a machine without one (DESIGN.md,
"Checking GPU code ...", item 4): what the *_triton_aot.py tests share. A kernel is compiled by
``triton.compile`` for a capability; the bundled ``ptxas -v`` reports registers, spill bytes and
shared memory; ``cuobjdump -sass`` finds local-memory accesses (spills) inside loops."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import re
import subprocess
import tempfile
from pathlib import Path

CAPABILITIES = (80, 90)


def signature(kernel, constexprs: dict, pointers=("_ptr",), types=None, other="i32") -> dict:
    """Argument types: ``constexpr`` for ``constexprs``, ``types[name]`` where given, float32
    tensors for names ending in one of ``pointers``, ``other`` for the rest."""
    types = types or {}
    sig = {}
    for name in kernel.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in types:
            sig[name] = types[name]
        elif pointers and name.endswith(pointers):
            sig[name] = "*fp32"
        else:
            sig[name] = other
    return sig


def launch_attrs(kernel, sig: dict, divisible=()) -> dict:
    """The divisibility attributes a launch gives (triton's JIT specialises every pointer argument
    that is 16-byte aligned, as torch's allocations are, and every integer argument that is a
    multiple of 16): all pointers, and the integer arguments named in ``divisible``."""
    return {
        (i,): [["tt.divisibility", 16]]
        for i, n in enumerate(kernel.arg_names)
        if sig[n].startswith("*") or n in divisible
    }


def compile_kernel(kernel, constexprs: dict, sig: dict, cc: int, attrs=None, **options):
    """``triton.compile`` of ``kernel`` specialised on ``constexprs`` (and the divisibility
    ``attrs`` of launch_attrs, if given) for ``sm_<cc>``."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    src = ASTSource(
        fn=kernel,
        signature=sig,
        constexprs={(kernel.arg_names.index(n),): v for n, v in constexprs.items()},
        attrs=attrs,
    )
    return triton.compile(src, target=GPUTarget("cuda", cc, 32), options=options)


def compile_all(compile_job, jobs: list, workers: int = 2) -> list[dict]:
    """``compile_job(job)`` (a module-level function) for every job in ``workers`` processes."""
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch's threads
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        return list(pool.map(compile_job, jobs))


def ptxas_columns(r: dict) -> str:
    """A report's registers and spill bytes, as the tests' rows print them."""
    return f"regs={r['registers']:<4} spill(st/ld)={r['spill_stores']}/{r['spill_loads']} B"


def print_and_check(reports: list[dict], format_row, bad, what: str, detail=None) -> None:
    """Prints a row per report; fails listing the reports for which ``bad(report)`` holds (each
    with the lines ``detail(report)``)."""
    for r in reports:
        print(format_row(r))
    failing = [r for r in reports if bad(r)]
    assert not failing, f"{what}:\n" + "\n".join(
        format_row(r) + "".join("\n    " + x for x in (detail(r) if detail else ()))
        for r in failing
    )


def _bin(name: str) -> Path:
    import triton

    return Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name


_SASS_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?);")
_BRANCH = re.compile(r"\bBRA\s+(?:`\(\.L_x_\d+\)\s*)?0x([0-9a-f]+)")


def per_step_local_memory(cubin: bytes) -> list[str]:
    """Local-memory instructions (spills) inside loops of nesting height <= 1 of the kernel's
    machine code (height 0: a loop with no inner loop; 1: a loop around such loops)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "k.cubin"
        path.write_bytes(cubin)
        proc = subprocess.run([str(_bin("cuobjdump")), "-sass", str(path)], capture_output=True,
                              text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    instrs = [(int(m.group(1), 16), m.group(2)) for m in _SASS_LINE.finditer(proc.stdout)]
    assert instrs, "no instructions in cuobjdump -sass output"
    ends: dict[int, int] = {}  # loop head -> address of its last backward branch
    for addr, text in instrs:
        b = _BRANCH.search(text)
        if b and int(b.group(1), 16) < addr:
            head = int(b.group(1), 16)
            ends[head] = max(ends.get(head, addr), addr)
    loops = sorted(ends.items())

    def height(loop) -> int:
        inner = [x for x in loops if x != loop and loop[0] <= x[0] and x[1] <= loop[1]]
        return 0 if not inner else 1 + max(height(x) for x in inner)

    per_step = [lp for lp in loops if height(lp) <= 1]
    return [
        f"{addr:#x}: {text.strip()}"
        for addr, text in instrs
        if re.search(r"\b(LDL|STL)\b", text) and any(a <= addr <= b for a, b in per_step)
    ]


def ptxas_report(ptx: str) -> dict:
    """Registers, spill bytes and shared memory of the one kernel in ``ptx``, from ``ptxas -v``."""
    arch = re.search(r"^\.target\s+(\S+)", ptx, re.M).group(1)
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "k.ptx"
        src.write_text(ptx)
        proc = subprocess.run(
            [str(_bin("ptxas")), f"-arch={arch}", "-v", str(src), "-o", str(Path(d) / "k.cubin")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    regs = re.search(r"Used (\d+) registers", out)
    spill_st = re.search(r"(\d+) bytes spill stores", out)
    spill_ld = re.search(r"(\d+) bytes spill loads", out)
    smem = re.search(r"(\d+) bytes smem", out)
    return {
        "arch": arch,
        "registers": int(regs.group(1)),
        "spill_stores": int(spill_st.group(1)) if spill_st else 0,
        "spill_loads": int(spill_ld.group(1)) if spill_ld else 0,
        "ptxas_smem": int(smem.group(1)) if smem else 0,
    }
