"""Ahead-of-time compilation of the plastic_lstm Triton kernels for real GPUs, on a machine without
one (as test_plastic_rnn_triton_aot.py does for plastic_rnn, whose ptxas / cuobjdump helpers this
file uses): the shipped tiles (plastic_lstm_ops.BLOCK_I x BLOCK_J on NUM_WARPS warps) of the forward
step, recomputation and backward step kernels, every optional part switched on (the most live
registers), compiled by ``triton.compile`` for sm_80 and sm_90; the machine code must have no local-memory
access inside the kernels' loops, and ``ptxas -v`` at most a few spilled bytes outside them.

Measured (triton 3.8, BLOCK_I x BLOCK_J = 16 x 64, 4 warps): 62-148 registers, no spill, but for
sm_80's retro backward step, which sat at the 168-register cap and spilled 8 bytes (12 with a
variant) outside the loops: it walks 8-row tiles (plastic_lstm_ops.bwd_block_i), 96 registers.
Every case must now compile without any spill. With 32-row tiles the kernels took 220-255
registers.

Also a script: ``python tests/test_plastic_lstm_triton_aot.py``.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing

from triton_env import AOT_MARKS

pytestmark = AOT_MARKS

CAPABILITIES = (80, 90)
KERNELS = ("fwd_step", "recompute", "bwd_step")
# The modulated rules carry the most live tiles (retro: trace and eligibility, and their adjoints).
# Then the variants of docs/SPEC.md section 2.1 (READ, POST constexprs) with the most live values:
# retro with the read-out clip and the drive (the bwd step's extra adjoint), gated with the cell.
CASES = [("retro", 2), ("neuromod", 1), ("hebb", 0)]
VARIANT_CASES = [("retro", 2, True, 1), ("gated", 1, False, 2)]


def _flags(name: str) -> dict:
    return {
        "fwd_step": {"PENDING": True, "STEP": True, "CKPT": True},
        "recompute": {},
        "bwd_step": {"HAS_GH": True, "HAS_GC": True, "CELL": True, "TRACE": True},
    }[name]


def compile_one(
    name: str, rule: str, alpha_kind: int, cc: int, read: bool = False, post: int = 0
) -> dict:
    import triton
    from test_plastic_rnn_triton_aot import _signature, per_step_local_memory, ptxas_report
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from hebbkern.triton import plastic_lstm as k
    from hebbkern.triton import plastic_lstm_ops as ops

    kernel = getattr(k, f"plastic_lstm_{name}_kernel")
    block_i = ops.bwd_block_i(rule, int(read) + 2 * post) if name == "bwd_step" else ops.BLOCK_I
    constexprs = {"RULE": ops.RULE_IDS[rule], "BLOCK_I": block_i, "BLOCK_J": ops.BLOCK_J,
                  "HAS_FANOUT": rule in ("neuromod", "retro"), **_flags(name)}  # fmt: skip
    if "ALPHA_KIND" in kernel.arg_names:
        constexprs["ALPHA_KIND"] = alpha_kind
    if "READ" in kernel.arg_names:
        constexprs["READ"] = read
    constexprs["POST"] = post
    sig = _signature(kernel, constexprs)
    if "rclip" in sig:  # the read-out clip's bound, a float like clip
        sig["rclip"] = "fp32"
    src = ASTSource(
        fn=kernel,
        signature=sig,
        constexprs={(kernel.arg_names.index(n),): v for n, v in constexprs.items()},
    )
    compiled = triton.compile(
        src, target=GPUTarget("cuda", cc, 32), options={"num_warps": ops.NUM_WARPS}
    )
    rep = ptxas_report(compiled.asm["ptx"])
    rep["loop_local_memory"] = per_step_local_memory(compiled.asm["cubin"])
    rep.update(kernel=name, rule=rule, alpha_kind=alpha_kind, cc=cc, read=read, post=post)
    return rep


def _job(job: tuple) -> dict:
    return compile_one(*job)


def all_reports(workers: int = 2) -> list[dict]:
    jobs = [(n, rule, ak, cc) for cc in CAPABILITIES for n in KERNELS for rule, ak in CASES]
    jobs += [(n, *v[:2], cc, *v[2:]) for cc in CAPABILITIES for n in KERNELS for v in VARIANT_CASES]
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch's threads
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        return list(pool.map(_job, jobs))


def format_row(r: dict) -> str:
    return (
        f"{r['arch']:>7} {r['kernel']:>9} {r['rule']:>8} alpha_kind={r['alpha_kind']} "
        f"read={int(r['read'])} post={r['post']} "
        f"regs={r['registers']:<4} spill(st/ld)={r['spill_stores']}/{r['spill_loads']} B "
        f"in-loops={len(r['loop_local_memory'])} smem={r['ptxas_smem']} B"
    )


def test_kernels_compile_for_sm80_sm90_without_spills():
    reports = all_reports()
    for r in reports:
        print(format_row(r))
    assert len(reports) == len(CAPABILITIES) * len(KERNELS) * (len(CASES) + len(VARIANT_CASES))
    for r in reports:
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, format_row(r)
        assert not r["loop_local_memory"], format_row(r) + "\n" + "\n".join(r["loop_local_memory"])


if __name__ == "__main__":
    for r in all_reports():
        print(format_row(r))
