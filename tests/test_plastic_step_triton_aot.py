"""Ahead-of-time compilation of the single-step Triton kernels (``plastic_step``,
``plastic_linear``) for sm_80 and sm_90 on a machine without a GPU, as
test_plastic_rnn_triton_aot.py does for ``plastic_rnn`` (both with triton_aot.py's ptxas and
cuobjdump helpers): the shipped launch configuration of every kernel, with every optional input
present (the most live registers), must compile with no local-memory access (spill) inside a loop
of the machine code; under the pinned triton (requirements/test.txt, 3.8) the ``plastic_step``
kernels with no spill byte at all (``ptxas -v``), in or outside loops. Spill bytes outside loops
(once per launch) are otherwise printed only: ``plastic_linear``'s, and under triton 3.6 (the
oldest-torch stage) plastic_step's backward at width 128 (12-20 bytes stored; ptxas keeps 128
registers there).

Also a script: ``python tests/test_plastic_step_triton_aot.py``.
"""

from __future__ import annotations

import triton
import triton_aot as aot
from triton_env import AOT_MARKS

pytestmark = AOT_MARKS

STEP_RULES = ("hebb", "oja", "clip", "neuromod", "retro", "gated")
# (width, rules): every rule at the agent's width 128; the widest tiles for the modulated rules.
STEP_WIDTHS = ((128, STEP_RULES), (1024, ("neuromod", "retro")))
# The variants of SPEC.md section 1.1 at once (selu, sigmoid squashing, soft clip, half the neurons
# modulated): the most live values of the variant code paths.
VARIANT_CONSTS = {"SOFT": True, "ACT": 2, "SQUASH": 1, "UNMOD": True}


def _signature(kernel, constexprs: dict) -> dict:
    """float32 tensors, the clamp mask as uint8, the ticket counters as int32, i32 sizes, fp32
    clip."""
    types = {"clamp_ptr": "*u8", "count_ptr": "*i32", "clip": "fp32"}
    return aot.signature(kernel, constexprs, pointers=("_ptr", "_out"), types=types)


def compile_one(job: tuple) -> dict:
    from hebbkern.triton import plastic_linear as lin
    from hebbkern.triton import plastic_step as st
    from hebbkern.triton.plastic_linear_ops import GPU_BLOCKS
    from hebbkern.triton.plastic_rnn import RULE_IDS
    from hebbkern.triton.plastic_rnn_ops import _variant_args, tile_configs

    name, rule, width, variant, cc = job
    if name in ("fwd", "bwd", "fwd_variants", "bwd_variants"):
        kernel = (
            st.plastic_step_bwd_kernel if name.startswith("bwd") else st.plastic_step_fwd_kernel
        )
        cfg = tile_configs(width)[-1]
        c = {"RULE": RULE_IDS[rule], "ALPHA_KIND": variant, "W_PER_SAMPLE": False,
             "HAS_FANOUT": rule in ("neuromod", "retro", "gated"), "HAS_CLAMP": True,
             "BLOCK_N": width, **_variant_args(rule, width, 0)[1], **cfg.kwargs}  # fmt: skip
        # The variant constants (SOFT, ACT, SQUASH, UNMOD) are compile-time constants at every
        # launch (plastic_step_ops.py passes _variant_args's); left out here they would compile
        # as run-time integers, a kernel never launched (one spilled a predicate on sm_90a).
        warps = cfg.num_warps
        if name.startswith("bwd"):
            c.update(HAS_GHEBB=True, HAS_GELIG=True)
        if name.endswith("_variants"):
            c.update(VARIANT_CONSTS, USES_ETA=True)
    else:
        kernel = {"linear_fwd": lin.plastic_linear_fwd_kernel,
                  "linear_bwd": lin.plastic_linear_bwd_kernel}[name]  # fmt: skip
        bb, bm, bk, warps = GPU_BLOCKS
        c = {"ALPHA_KIND": 2, "PER_SAMPLE": bool(variant), "BLOCK_B": bb, "BLOCK_M": bm,
             "BLOCK_K": min(bk, width)}  # fmt: skip
    compiled = aot.compile_kernel(kernel, c, _signature(kernel, c), cc, num_warps=warps)
    rep = aot.ptxas_report(compiled.asm["ptx"])
    rep["in_loops"] = aot.per_step_local_memory(compiled.asm["cubin"])
    rep.update(kernel=name, rule=rule, width=width, variant=variant, warps=warps)
    return rep


def jobs() -> list[tuple]:
    out = []
    for cc in aot.CAPABILITIES:
        for width, rules in STEP_WIDTHS:
            for rule in rules:
                for name in ("fwd", "bwd"):
                    out.append((name, rule, width, 3 if rule == "retro" else 2, cc))
            for name in ("fwd_variants", "bwd_variants"):
                out.append((name, "neuromod", width, 2, cc))
        for per_sample in (0, 1):
            for name in ("linear_fwd", "linear_bwd"):
                out.append((name, "-", 128, per_sample, cc))  # BLOCK_K = min(max, 128)
    return out


def all_reports(workers: int = 2) -> list[dict]:
    return aot.compile_all(compile_one, jobs(), workers)


def format_row(r: dict) -> str:
    return (
        f"{r['arch']:>7} {r['kernel']:>12} {r['rule']:>8} width={r['width']:<5} "
        f"variant={r['variant']} warps={r['warps']} {aot.ptxas_columns(r)} "
        f"in-loops={len(r['in_loops'])}"
    )


def _triton_version() -> tuple[int, int]:
    return tuple(int(x) for x in triton.__version__.split(".")[:2])


def _spills(r: dict) -> bool:
    """Local memory inside a loop (any kernel), or any spill byte (plastic_step, triton >= 3.8)."""
    step = not r["kernel"].startswith("linear") and _triton_version() >= (3, 8)
    return bool(r["in_loops"]) or (step and (r["spill_stores"] or r["spill_loads"]) > 0)


def test_single_step_kernels_compile_for_sm80_sm90_without_spills():
    aot.print_and_check(all_reports(), format_row, _spills,
                        "spills (inside loops; any in plastic_step under triton >= 3.8)",
                        lambda r: r["in_loops"])  # fmt: skip


if __name__ == "__main__":
    for r in all_reports():
        print(format_row(r))
