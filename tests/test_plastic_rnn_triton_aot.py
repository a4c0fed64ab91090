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

Specialisation: every compile-time argument the op passes is a constexpr here too. Triton's launch
also specialises on alignment (pointers 16-byte aligned; integers that are multiples of 16), which
changes the code (vector loads, fewer index computations) and ptxas's register budget. The test
compiles without those attributes (a launch at an N that is not a multiple of 16); the script
also compiles each kernel at the design width (128) as a launch with 16-aligned tensors, N = 128
and a batch that is a multiple of 16 specialises it ("launch" rows; the issue's benchmark shapes),
which on sm_90 still spill a few bytes in the step loop (benchmarks/NOTES.md, section 8, "as
launched"): not asserted until the configurations are reworked.

Also a script: ``python tests/test_plastic_rnn_triton_aot.py``.
"""

from __future__ import annotations

from triton_aot import (
    CAPABILITIES,
    compile_all,
    compile_kernel,
    launch_attrs,
    per_step_local_memory,
    print_and_check,
    ptxas_columns,
    ptxas_report,
    signature,
)
from triton_env import AOT_MARKS

# test_plastic_lstm_triton_aot.py imports these from here.
__all__ = ["_signature", "per_step_local_memory", "ptxas_report"]

pytestmark = [
    *AOT_MARKS,
]

RULES = ("hebb", "oja", "clip", "neuromod", "retro")
# Padded widths BLOCK_N: every rule at the design's target width (128); at the ends of the range
# (one row block holding the whole trace; thin row blocks of a wide trace) the two modulated rules,
# whose kernels carry the most live tiles (retro: trace and eligibility). At 32 the (2048, 8)
# shape is the resident kernels' (issue 13 item 4); at 64 only the resident configuration (the
# forward's, 16 warps) is compiled: the tiled shapes there are those checked at 32 and 128.
WIDTHS = {32: ("neuromod", "retro"), 64: ("neuromod", "retro"), 128: RULES,
          1024: ("neuromod", "retro")}  # fmt: skip
RESIDENT_ONLY_WIDTHS = (64,)


def _signature(kernel, constexprs: dict) -> dict:
    """Argument types: float32 tensors, the clamp mask as uint8, i32 sizes, fp32 clip."""
    return signature(kernel, constexprs, types={"clamp_ptr": "*u8", "clip": "fp32"})


# The widths the script also compiles with a launch's alignment specialisation (N = BLOCK_N,
# B % 16 == 0).
LAUNCH_WIDTHS = (128,)


def compile_one(
    kernel_name: str, rule: str, BN: int, config, cc: int, per_sample: bool = False,
    launch: bool = False,
) -> dict:  # fmt: skip
    """One kernel as the op launches it: every compile-time argument of the launch is a
    constexpr here too (left out, a flag would compile as a run-time integer, a kernel never
    launched). ``per_sample``: w, alpha and eta per sample (a population); ``launch``: with the
    divisibility a launch with aligned tensors, N = BN and B a multiple of 16 gets."""
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
    constexprs.update(W_PER_SAMPLE=per_sample, A_PER_SAMPLE=per_sample, ETA_PER_SAMPLE=per_sample)
    missing = [p.name for p in kernel.params if p.is_constexpr and p.name not in constexprs]
    assert not missing, f"compile-time arguments left to run time: {missing}"
    sig = _signature(kernel, constexprs)
    attrs = launch_attrs(kernel, sig, ("N", "B")) if launch else None
    regs = {} if config.maxnreg is None else {"maxnreg": config.maxnreg}
    compiled = compile_kernel(kernel, constexprs, sig, cc, attrs, num_warps=config.num_warps,
                              num_stages=config.num_stages, **regs)  # fmt: skip
    rep = ptxas_report(compiled.asm["ptx"])
    rep["per_step_local_memory"] = per_step_local_memory(compiled.asm["cubin"])
    rep.update(
        kernel=kernel_name, rule=rule, cc=cc, BLOCK_N=BN, BLOCK_I=config.kwargs["BLOCK_I"],
        num_warps=config.num_warps, triton_shared=int(compiled.metadata.shared),
        maxnreg=config.maxnreg, resident=config.kwargs["RESIDENT"],
        per_sample=per_sample, launch=launch,
    )  # fmt: skip
    return rep


def _compile_job(job: tuple) -> dict:
    from hebbkern.triton.plastic_rnn_ops import configs_for

    kernel_name, rule, BN, config_index, cc, per_sample, launch = job
    config = configs_for(BN, per_sample and kernel_name == "bwd", kernel_name)[config_index]
    return compile_one(kernel_name, rule, BN, config, cc, per_sample, launch)


def all_reports(workers: int = 2, per_sample_values=(False,), launch_widths=()) -> list[dict]:
    """Compiles every (kernel, rule, width, shipped config, capability; unspecialised, and as
    launched at ``launch_widths``) in ``workers`` processes, with the parameters shared and/or per
    sample (``per_sample_values``)."""
    from hebbkern.triton.plastic_rnn_ops import configs_for

    jobs = [
        (kernel_name, rule, BN, i, cc, ps, launch)
        for cc in CAPABILITIES
        for BN, rules in WIDTHS.items()
        for launch in (False, True)
        if (not launch or BN in launch_widths)
        for kernel_name in ("fwd", "bwd")
        for i, config in enumerate(configs_for(BN, False, kernel_name))
        if BN not in RESIDENT_ONLY_WIDTHS or config.kwargs["RESIDENT"]
        for rule in rules
        for ps in per_sample_values
    ]
    return compile_all(_compile_job, jobs, workers)


def format_row(r: dict) -> str:
    where = f"{r['arch']:>7} {r['kernel']:>4} {r['rule']:>8} BLOCK_N={r['BLOCK_N']:<5} "
    where += f"BLOCK_I={r['BLOCK_I']:<4} warps={r['num_warps']:<2} "
    where += "resident " if r["resident"] else "         "
    where += ("launch " if r["launch"] else "       ") + ("per-sample " if r["per_sample"] else "")
    loop = f" in-time-loop={len(r['per_step_local_memory'])} smem={r['triton_shared']} B"
    return where + ptxas_columns(r) + loop


def test_every_shipped_config_compiles_for_sm80_sm90_without_spills_in_the_time_loop():
    reports = all_reports()
    print_and_check(reports, format_row, lambda r: r["per_step_local_memory"],
                    "local memory (spills) inside the time loop",
                    lambda r: r["per_step_local_memory"])  # fmt: skip
    assert {r["cc"] for r in reports} == set(CAPABILITIES)
    assert {r["kernel"] for r in reports} == {"fwd", "bwd"}


if __name__ == "__main__":
    for r in all_reports(launch_widths=LAUNCH_WIDTHS):
        print(format_row(r), flush=True)
