"""Ahead-of-time compilation of the Triton kernels for real GPUs, on a machine without one
(DESIGN.md, "Checking GPU code ...", item 4).

Every shipped kernel configuration (``configs_for``: the autotuner's block sizes and warps) of the
forward and backward kernels, with every optional input present (the most live registers), is
compiled by ``triton.compile`` for sm_80 and sm_90; the bundled ``ptxas -v`` then reports
registers, spill bytes and shared memory, printed as a table.

Spills: ptxas sometimes keeps a few long-lived scalars (the per-chunk loop bounds of the backward)
in local memory even far below the register limit (it does so with ``--maxrregcount=255`` too).
What matters is the time loop, so the test reads the machine code (``cuobjdump -sass``), finds the
loops from their backward branches, and fails on any local-memory access (``LDL``/``STL``) inside
a per-step loop (a loop holding at most one level of nested loops: the step loops and their
row-block loops). Spills outside them (once per kernel or per checkpoint chunk) are reported.

Also a script: ``python tests/test_plastic_rnn_triton_aot.py``.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import re
import subprocess
import tempfile
from pathlib import Path

from triton_env import AOT_MARKS

pytestmark = [
    *AOT_MARKS,
]

RULES = ("hebb", "oja", "clip", "neuromod", "retro")
CAPABILITIES = (80, 90)
# Padded widths BLOCK_N: every rule at the design's target width (128); at the ends of the range
# (one row block holding the whole trace; thin row blocks of a wide trace) the two modulated rules,
# whose kernels carry the most live tiles (retro: trace and eligibility).
WIDTHS = {32: ("neuromod", "retro"), 128: RULES, 1024: ("neuromod", "retro")}


def _signature(kernel, constexprs: dict) -> dict:
    """Argument types: float32 tensors, the clamp mask as uint8, i32 sizes, fp32 clip."""
    sig = {}
    for name in kernel.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name == "clamp_ptr":
            sig[name] = "*u8"
        elif name.endswith("_ptr"):
            sig[name] = "*fp32"
        elif name == "clip":
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    return sig


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


def compile_one(kernel_name: str, rule: str, BN: int, config, cc: int) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from hebbkern.triton import plastic_rnn as k
    from hebbkern.triton.plastic_rnn_ops import _variant_args

    kernel = {"fwd": k.plastic_rnn_fwd_kernel, "bwd": k.plastic_rnn_bwd_kernel}[kernel_name]
    flags = {"fwd": ("HAS_H0", "HAS_HEBB0", "HAS_ELIG0", "HAS_CLAMP", "HAS_FANOUT"),
             "bwd": ("HAS_H0", "HAS_GHEBB", "HAS_GELIG", "HAS_CLAMP", "HAS_FANOUT")}  # fmt: skip
    constexprs = {"RULE": k.RULE_IDS[rule], "ALPHA_KIND": 2, "BLOCK_N": BN, **config.kwargs}
    constexprs.update({f: True for f in flags[kernel_name]})
    if rule not in ("neuromod", "retro"):
        constexprs["HAS_FANOUT"] = False
    # The variant constants of the default call (SPEC.md section 1): what the op launches with.
    constexprs.update(_variant_args(rule, BN, 0)[1])
    src = ASTSource(
        fn=kernel,
        signature=_signature(kernel, constexprs),
        constexprs={(kernel.arg_names.index(n),): v for n, v in constexprs.items()},
    )
    compiled = triton.compile(
        src,
        target=GPUTarget("cuda", cc, 32),
        options={"num_warps": config.num_warps, "num_stages": config.num_stages},
    )
    rep = ptxas_report(compiled.asm["ptx"])
    rep["per_step_local_memory"] = per_step_local_memory(compiled.asm["cubin"])
    rep.update(
        kernel=kernel_name, rule=rule, cc=cc, BLOCK_N=BN, BLOCK_I=config.kwargs["BLOCK_I"],
        num_warps=config.num_warps, triton_shared=int(compiled.metadata.shared),
    )  # fmt: skip
    return rep


def _compile_job(job: tuple) -> dict:
    from hebbkern.triton.plastic_rnn_ops import configs_for

    kernel_name, rule, BN, config_index, cc = job
    return compile_one(kernel_name, rule, BN, configs_for(BN)[config_index], cc)


def all_reports(workers: int = 2) -> list[dict]:
    """Compiles every (kernel, rule, width, shipped config, capability) in ``workers`` processes."""
    from hebbkern.triton.plastic_rnn_ops import configs_for

    jobs = [
        (kernel_name, rule, BN, i, cc)
        for cc in CAPABILITIES
        for BN, rules in WIDTHS.items()
        for i in range(len(configs_for(BN)))
        for rule in rules
        for kernel_name in ("fwd", "bwd")
    ]
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch's threads
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        return list(pool.map(_compile_job, jobs))


def format_row(r: dict) -> str:
    return (
        f"{r['arch']:>7} {r['kernel']:>4} {r['rule']:>8} BLOCK_N={r['BLOCK_N']:<5} "
        f"BLOCK_I={r['BLOCK_I']:<4} warps={r['num_warps']:<2} regs={r['registers']:<4} "
        f"spill(st/ld)={r['spill_stores']}/{r['spill_loads']} B "
        f"in-time-loop={len(r['per_step_local_memory'])} smem={r['triton_shared']} B"
    )


def test_every_shipped_config_compiles_for_sm80_sm90_without_spills_in_the_time_loop():
    reports = all_reports()
    for r in reports:
        print(format_row(r))
    bad = [r for r in reports if r["per_step_local_memory"]]
    assert not bad, "local memory (spills) inside the time loop:\n" + "\n".join(
        format_row(r) + "\n    " + "\n    ".join(r["per_step_local_memory"]) for r in bad
    )
    assert {r["cc"] for r in reports} == set(CAPABILITIES)
    assert {r["kernel"] for r in reports} == {"fwd", "bwd"}


if __name__ == "__main__":
    for r in all_reports():
        print(format_row(r), flush=True)
