"""Reading ``cuobjdump -sass`` output for the performance model (benchmarks/perf_model.py).

Small pure functions on the text, each unit-tested on a saved excerpt
(tests/data/perf_model_excerpt.sass): split the listing into kernels, parse instructions, classify
opcodes, find loops from their backward branches, pick the step loop and its hottest inner loop,
and read a loop's unroll factor.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

_FUNCTION = re.compile(r"^\s*Function\s*:\s*(\S+)", re.M)
# "/*0a30*/   @!P0 FFMA R1, R2, R3, R4 ;" -> address, optional predicate, opcode, operands.
_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_TARGET = re.compile(r"0x([0-9a-f]+)")
_MEM_OPERAND = re.compile(r"\[(R\d+|RZ)(?:\.64)?(?:\+(?:UR\d+\+)?(-?0x[0-9a-f]+))?\]")


@dataclass(frozen=True)
class Instr:
    addr: int
    pred: str  # "" or "@P0", "@!P2", ...
    op: str  # full opcode with modifiers: "LDG.E", "BAR.SYNC.DEFER_BLOCKING"
    args: str

    @property
    def base(self) -> str:
        """The opcode without modifiers: "LDG", "BAR", "FFMA"."""
        return self.op.split(".", 1)[0]


def split_functions(text: str) -> dict[str, str]:
    """Each kernel's (mangled name's) part of a cuobjdump -sass listing."""
    heads = list(_FUNCTION.finditer(text))
    return {
        m.group(1): text[m.end() : heads[k + 1].start() if k + 1 < len(heads) else len(text)]
        for k, m in enumerate(heads)
    }


def parse_instructions(text: str) -> list[Instr]:
    out = []
    for m in _INSTR.finditer(text):
        pred = (m.group(2) or "").strip()
        out.append(Instr(int(m.group(1), 16), pred, m.group(3), m.group(4).strip()))
    return out


# Opcode (without modifiers) -> class. Generic LD/ST are their own class: the kernels address the
# trace through a generic pointer (shared memory or global, chosen at launch), so the same
# instruction reads shared memory at N=128 and global memory at N=1025.
_CLASSES = {
    "fp32": {"FFMA", "FMUL", "FADD", "FSETP", "FSEL", "FMNMX", "FCHK", "FRND", "FSET"},
    "fp64": {"DFMA", "DMUL", "DADD", "DSETP", "DMNMX"},
    "int": {
        "IMAD",
        "IADD3",
        "LEA",
        "LOP3",
        "SHF",
        "ISETP",
        "IABS",
        "IMNMX",
        "SEL",
        "PRMT",
        "FLO",
        "POPC",
        "LOP",
        "IADD",
        "VIADD",
        "VIMNMX",
        "I2F",
        "F2I",
        "F2F",
        "I2FP",
        "F2FP",
        "UIMAD",
        "UIADD3",
        "ULEA",
        "ULOP3",
        "USHF",
        "UISETP",
        "USEL",
        "UMOV",
        "PLOP3",
        "P2R",
        "R2P",
        "R2UR",
        "S2R",
        "S2UR",
        "CS2R",
        "ULDC",
        "LDC",
        "MOV",
        "IMUL",
    },
    "lds": {"LDS", "LDSM"},
    "sts": {"STS"},
    "ld_generic": {"LD"},
    "st_generic": {"ST"},
    "ldg": {"LDG"},
    "stg": {"STG", "RED", "ATOMG"},
    "ldl_stl": {"LDL", "STL"},
    "bar": {"BAR"},
    "shfl": {"SHFL"},
    "mufu": {"MUFU"},
    "branch": {
        "BRA",
        "BSSY",
        "BSYNC",
        "WARPSYNC",
        "CALL",
        "RET",
        "EXIT",
        "BREAK",
        "ENDCOLLECTIVE",
        "NOP",
        "YIELD",
    },
}
_CLASS_OF = {op: cls for cls, ops in _CLASSES.items() for op in ops}


def op_class(op: str) -> str:
    """The class of an opcode (modifiers ignored); "other" when not listed."""
    return _CLASS_OF.get(op.split(".", 1)[0], "other")


def class_counts(instrs: list[Instr]) -> Counter:
    return Counter(op_class(i.op) for i in instrs)


def main_body_end(instrs: list[Instr]) -> int:
    """Address of the last EXIT. Past it lie out-of-line blocks (divergent-warp fallbacks of the
    shuffles, subroutines) that jump back into the body: their backward branches are not loops."""
    exits = [i.addr for i in instrs if i.base == "EXIT"]
    return max(exits) if exits else instrs[-1].addr


def find_loops(instrs: list[Instr]) -> list[tuple[int, int]]:
    """Loops as (head, end) address pairs: a branch back to an earlier address inside the main
    body; one pair per head, ending at its last backward branch; sorted by head."""
    last = main_body_end(instrs)
    ends: dict[int, int] = {}
    for i in instrs:
        if i.base != "BRA" or i.addr > last:
            continue
        m = _TARGET.search(i.args)
        if m and int(m.group(1), 16) < i.addr:
            head = int(m.group(1), 16)
            ends[head] = max(ends.get(head, i.addr), i.addr)
    return sorted(ends.items())


def body(instrs: list[Instr], loop: tuple[int, int]) -> list[Instr]:
    return [i for i in instrs if loop[0] <= i.addr <= loop[1]]


def inner_loops(loop: tuple[int, int], loops: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The loops strictly inside ``loop``."""
    return [x for x in loops if x != loop and loop[0] <= x[0] and x[1] <= loop[1]]


def barriers(instrs: list[Instr]) -> int:
    return sum(i.base == "BAR" for i in instrs)


def step_loop(instrs: list[Instr], loops: list[tuple[int, int]]) -> tuple[int, int]:
    """The time-step loop: the innermost loop holding at least two block-wide barriers. A step has
    several phases separated by barriers; the loops inside a step (over trace elements, rows,
    partial sums) have none, and a loop around the step loop (the backward's checkpoint chunks)
    holds another loop with barriers. The sm_90 cluster kernels hold two bodies, the thread-block
    cluster's and the one synchronised through global memory (NOTES.md M12, only run with
    HEBBKERN_CUDA_CLUSTERS=global): where a candidate holds a cluster wait (UCGABAR_WAIT), the
    step loop is one of those."""
    with_bars = [lp for lp in loops if barriers(body(instrs, lp)) >= 2]
    if not with_bars:
        raise ValueError("no loop with two or more block-wide barriers (BAR)")
    innermost = [lp for lp in with_bars if not any(x in with_bars for x in inner_loops(lp, loops))]
    clustered = [lp for lp in innermost
                 if any(i.base == "UCGABAR_WAIT" for i in body(instrs, lp))]  # fmt: skip
    return max(clustered or innermost, key=lambda lp: barriers(body(instrs, lp)))


def hot_loop(
    instrs: list[Instr],
    outer: tuple[int, int],
    loops: list[tuple[int, int]],
    params_in_smem: bool = False,
):
    """The pass over the trace elements: of the innermost loops inside ``outer``, one that
    stores to the trace (generic ST or STS: the compiler may split off a read-only variant of the
    pass for the first step, where there is no pending update), then the most global loads (LDG:
    w and alpha are read per element; the loops over vectors and partial sums read shared
    memory), then the most instructions. params_in_smem (the forward's kWhere 2: w and alpha in
    shared memory, no LDG left in the pass): the most loads from any memory instead."""
    leaves = [x for x in inner_loops(outer, loops) if not inner_loops(x, loops)]
    if not leaves:
        raise ValueError(f"no inner loop in {outer[0]:#x}-{outer[1]:#x}")

    def key(lp):
        c = class_counts(body(instrs, lp))
        loads = c["ldg"] + (c["lds"] + c["ld_generic"] if params_in_smem else 0)
        return c["st_generic"] + c["sts"] > 0, loads, sum(c.values())

    return max(leaves, key=key)


def unroll_factor(instrs: list[Instr]) -> int:
    """Elements per iteration of an unrolled loop: the most distinct immediate offsets among the
    loads from one base register (an unrolled walk over a row reads [R+0], [R+4], [R+8], ... from
    one pointer; a loop striding over a warp reads [R], [R+0x80])."""
    offsets: dict[str, set[int]] = {}
    for i in instrs:
        if op_class(i.op) not in ("ld_generic", "ldg", "lds"):
            continue
        m = _MEM_OPERAND.search(i.args)
        if m:
            offsets.setdefault(m.group(1), set()).add(int(m.group(2) or "0", 16))
    return max((len(s) for s in offsets.values()), default=1)
