"""hebbkern benchmarks: eager reference vs torch.compile vs the fused backends, in one run.

Run ``python -m benchmarks --help`` (or ``python benchmarks/run.py``) from the repository root.

- ``run.py``: command line, case loop, progress bar, outputs.
- ``plastic_rnn.py``: the cases of ``hebbkern.plastic_rnn`` (inputs, providers, byte model).
- ``common.py``: timing, memory, machine info, table, CSV/JSON and plot helpers.
- ``test_bench_plastic_rnn.py``: the same cases as pytest-benchmark tests
  (``pytest benchmarks --benchmark-only``).
- ``gpu_check.sh OUTDIR``: build, tests and benchmarks on a machine with an NVIDIA GPU.
"""
