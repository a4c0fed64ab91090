"""Ahead-of-time compilation of the plastic_rnn Triton kernels with w, alpha and eta per sample (a
population, issue 13 item 3) for sm_80 and sm_90, as test_plastic_rnn_triton_aot.py does for the
shared parameters (the same jobs: every shipped configuration for per-sample launches, every
optional input present, alpha per connection), with the per-sample flags as the compile-time
constants the op launches with: no local-memory access (spill) inside a per-step loop of the
machine code.

Also a script printing each per-sample row next to its shared twin (what the per-sample slab
offsets cost in registers; benchmarks/NOTES.md):
``python tests/test_plastic_rnn_population_triton_aot.py``.
"""

from __future__ import annotations

from test_plastic_rnn_triton_aot import LAUNCH_WIDTHS, all_reports, format_row
from triton_aot import CAPABILITIES, print_and_check
from triton_env import AOT_MARKS

pytestmark = AOT_MARKS


def test_per_sample_kernels_compile_for_sm80_sm90_without_spills_in_the_time_loop():
    reports = all_reports(per_sample_values=(True,))
    print_and_check(reports, format_row, lambda r: r["per_step_local_memory"],
                    "local memory (spills) inside the time loop",
                    lambda r: r["per_step_local_memory"])  # fmt: skip
    assert {r["cc"] for r in reports} == set(CAPABILITIES)
    assert all(r["per_sample"] for r in reports)


if __name__ == "__main__":
    for r in all_reports(per_sample_values=(False, True), launch_widths=LAUNCH_WIDTHS):
        print(format_row(r), flush=True)
