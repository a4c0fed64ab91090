"""Running code in a child process, so that a crash (SIGFPE, SIGSEGV, an abort) fails one test
instead of killing pytest, and classifying what a batch of bad calls did.

The child imports the same ``hebbkern`` as the test process (the source tree or the installed
wheel) and runs from a temporary folder, so it never picks up the source tree by accident.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import hebbkern

_PACKAGE_PARENT = str(Path(hebbkern.__file__).resolve().parents[1])


def run_isolated(code: str, *, timeout: float = 300, env: dict | None = None):
    """Runs ``code`` in a fresh Python; returns the CompletedProcess (never raises on failure)."""
    child_env = dict(os.environ, **(env or {}))
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (_PACKAGE_PARENT, child_env.get("PYTHONPATH", "")) if p
    )
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=cwd,
            env=child_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


def assert_survives(code: str, **kw) -> str:
    """``code`` must run to completion in a child process; returns its stdout."""
    proc = run_isolated(code, **kw)
    assert proc.returncode == 0, (
        f"child process {describe_exit(proc.returncode)}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )
    return proc.stdout


# One bad call per case: ``call`` is a Python expression or statement using the names set up by
# ``setup``; ``names`` are the argument names a clean error message must mention (any one).
@dataclass(frozen=True)
class BadCase:
    id: str
    call: str
    names: tuple[str, ...] = ()
    setup: str = ""
    expect_ok: bool = False  # a valid (edge-case) call that must run without an exception
    needs_ext: bool = False  # calls a raw torch.ops.hebbkern op


def bad_cases(setup: str, rows) -> list[BadCase]:
    """A table of bad calls sharing one ``setup``: a ``BadCase`` per row ``(id, call, names)``. The
    setups only define tensors, so a row that uses none of them is unaffected by its table's."""
    return [BadCase(cid, call, names, setup) for cid, call, names in rows]


_RUNNER = r"""
import json, sys, traceback
import torch, hebbkern
from hebbkern import nn as hnn, consolidation
cases = json.loads(sys.stdin.read())
for c in cases:
    print(json.dumps({"id": c["id"], "status": "start"}), flush=True)
    try:
        ns = {"torch": torch, "hebbkern": hebbkern, "hnn": hnn, "consolidation": consolidation}
        exec(c["setup"], ns)
        exec(c["call"], ns)
        print(json.dumps({"id": c["id"], "status": "silent"}), flush=True)
    except Exception as e:
        print(json.dumps({"id": c["id"], "status": "raised", "type": type(e).__name__,
                          "msg": str(e)[:2000]}), flush=True)
"""


@dataclass
class Outcome:
    case: BadCase
    kind: str  # "clean", "unclear", "silent", "crash"; for valid calls "ok" or "rejected"
    detail: str


def classify(cases: list[BadCase], *, timeout: float = 600) -> list[Outcome]:
    """Runs the cases, many per child process; a case that kills its process is recorded as a
    crash and the rest of the batch continues in a new process."""
    pending = list(cases)
    outcomes: list[Outcome] = []
    by_id = {c.id: c for c in cases}
    assert len(by_id) == len(cases), "case ids must be unique"
    while pending:
        payload = json.dumps([c.__dict__ for c in pending])
        with tempfile.TemporaryDirectory() as cwd:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p
            )
            proc = subprocess.run(
                [sys.executable, "-c", _RUNNER],
                input=payload,
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        started, done = [], set()
        for line in proc.stdout.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(rec, dict) or rec.get("id") not in by_id:
                continue
            case = by_id[rec["id"]]
            if rec["status"] == "start":
                started.append(case)
                continue
            done.add(case.id)
            if rec["status"] == "silent":
                kind = "ok" if case.expect_ok else "silent"
                outcomes.append(Outcome(case, kind, "no exception"))
                continue
            typ, msg = rec["type"], rec["msg"]
            if case.expect_ok:
                outcomes.append(Outcome(case, "rejected", f"{typ}: {msg}"))
                continue
            named = any(n in msg for n in case.names)
            kind = "clean" if typ in ("ValueError", "TypeError") and named else "unclear"
            outcomes.append(Outcome(case, kind, f"{typ}: {msg}"))
        crashed = [c for c in started if c.id not in done]
        if not crashed:
            if proc.returncode != 0 and len(done) < len(pending):
                raise RuntimeError(
                    f"bad-input runner failed before any case: {describe_exit(proc.returncode)}"
                    f"\n{proc.stderr[-3000:]}"
                )
            break
        dead = crashed[0]
        outcomes.append(
            Outcome(dead, "crash", f"{describe_exit(proc.returncode)}: {proc.stderr[-1500:]}")
        )
        pending = [c for c in pending if c.id not in done and c.id != dead.id]
    return outcomes


def report(outcomes: list[Outcome], kinds=("crash", "silent", "unclear", "rejected")) -> str:
    bad = [o for o in outcomes if o.kind in kinds]
    return "\n".join(f"[{o.kind}] {o.case.id}: {o.case.call}\n    {o.detail[:400]}" for o in bad)
