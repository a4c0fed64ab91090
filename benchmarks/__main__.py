"""``python -m benchmarks [FAMILY] [ARGS]``: the benchmark runners.

Without FAMILY (or with ``plastic_rnn``) this is the main job, the plastic_rnn runner
(``benchmarks/run.py``). Any other op family runs its own runner, ``benchmarks/<family>.py``, with
the remaining arguments (``python -m benchmarks fop --help``).
"""

import runpy
import sys

FAMILIES = ("plastic_rnn", "plastic_step", "trace_update", "plastic_linear", "plastic_lstm",
            "hebbian", "fop", "tasks", "lifetime", "population")  # fmt: skip

if len(sys.argv) > 1 and sys.argv[1] in FAMILIES and sys.argv[1] != "plastic_rnn":
    family = sys.argv.pop(1)
    sys.argv[0] = f"python -m benchmarks {family}"
    runpy.run_module(f"benchmarks.{family}", run_name="__main__", alter_sys=True)
    raise SystemExit(0)
if len(sys.argv) > 1 and sys.argv[1] == "plastic_rnn":
    sys.argv.pop(1)

from benchmarks.run import main  # noqa: E402

raise SystemExit(main())
