"""Ahead-of-time compilation of the fused FOP step's Triton kernels for real GPUs, on a machine
without one (DESIGN.md, "Checking GPU code ...", item 4).

Every shipped launch configuration (hebbkern/triton/fop_ops.py: tile rows, tiles per program and
warps of each class) of the four kernels is compiled by ``triton.compile`` for sm_80 and sm_90,
with weight decay on (the most live values), every base optimiser for the passes and bfloat16
parameters where the kernels convert; the bundled ``ptxas -v`` reports registers and spills
(tests/triton_aot.py). These kernels have no time loop: any spill fails.

Also a script: ``python tests/test_fop_triton_aot.py``.
"""

from __future__ import annotations

import pytest
import torch
from triton_aot import (
    CAPABILITIES,
    compile_all,
    compile_kernel,
    print_and_check,
    ptxas_columns,
    ptxas_report,
    signature,
)
from triton_env import AOT_MARKS

pytestmark = [
    *AOT_MARKS,
    pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the kernels compile for it"),
]

BASES = ("sgd", "momentum", "adam")


def jobs() -> list[tuple]:
    """(kernel, base, DPAD, parameter dtype name) for every shipped configuration."""
    out = []
    for dpad in (16, 64):
        out += [("pass1_matrix", b, dpad, "fp32") for b in BASES]
        out += [("pass2_matrix", None, dpad, "fp32"), ("precond", None, dpad, "fp32")]
    out += [("pass1_matrix", "adam", 16, "bf16"), ("pass2_matrix", None, 16, "bf16")]
    out += [("pass1_flat", b, None, "fp32") for b in BASES] + [("pass1_flat", "adam", None, "bf16")]
    return [(*j, cc) for cc in CAPABILITIES for j in jobs_unique(out)]


def jobs_unique(js):
    seen, out = set(), []
    for j in js:
        if j not in seen:
            seen.add(j)
            out.append(j)
    return out


def compile_one(job: tuple) -> dict:
    import triton.language as tl

    from hebbkern.triton import fop as k
    from hebbkern.triton import fop_ops

    name, base, dpad, wdt, cc = job
    kernel = getattr(k, f"{name}_kernel")
    W_DT = {"fp32": tl.float32, "bf16": tl.bfloat16}[wdt]
    if name == "precond":
        constexprs, warps = {"DPAD": dpad}, fop_ops.PRECOND_WARPS[dpad]
    elif name == "pass1_flat":
        block, tiles, warps = fop_ops.FLAT_CONFIG
        constexprs = {"BLOCK": block, "TILES": tiles}
    else:
        tile, tiles, warps = fop_ops.MATRIX_CONFIGS[dpad]
        constexprs = {"DPAD": dpad, "TILE_ROWS": tile, "TILES": tiles}
    if name != "precond":
        constexprs["W_DT"] = W_DT
    if name.startswith("pass1"):
        constexprs.update(BASE=k.BASE_IDS[base], HAS_WD=True)
    types = {"meta": "*i64", "progs": "*i32", "tensors": "*i32",
             "partial": "*fp32", "pbuf": "*fp32"}  # fmt: skip
    sig = signature(kernel, constexprs, pointers=(), types=types, other="fp32")
    compiled = compile_kernel(kernel, constexprs, sig, cc, num_warps=warps)
    rep = ptxas_report(compiled.asm["ptx"])
    rep.update(kernel=name, base=base or "-", DPAD=dpad or "-", dtype=wdt, cc=cc, warps=warps)
    return rep


def all_reports(workers: int = 2) -> list[dict]:
    return compile_all(compile_one, jobs(), workers)


def format_row(r: dict) -> str:
    where = f"{r['arch']:>7} {r['kernel']:>12} {r['base']:>8} DPAD={r['DPAD']!s:<3} {r['dtype']}"
    return f"{where} warps={r['warps']} " + ptxas_columns(r)


def test_every_shipped_config_compiles_for_sm80_sm90_without_spills():
    reports = all_reports()
    print_and_check(reports, format_row, lambda r: r["spill_stores"] or r["spill_loads"],
                    "register spills")  # fmt: skip
    assert {r["cc"] for r in reports} == set(CAPABILITIES)
    assert {r["kernel"] for r in reports} == {"pass1_matrix", "pass2_matrix", "precond",
                                              "pass1_flat"}  # fmt: skip


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    for r in all_reports():
        print(format_row(r), flush=True)
