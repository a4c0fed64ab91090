"""Procedurally generated meta-RL tasks (docs/SPEC.md section 7; protocol in section 7.1).

- :class:`Template`, :func:`generate_templates`, :func:`acceptance`: the task space;
- :func:`named_task` and the functions in :mod:`hebbkern.tasks.named`: tasks of the literature;
- :class:`MetaTaskEnv`: batches of episodes on torch tensors;
- :mod:`hebbkern.tasks.gym` (needs gymnasium): a ``gymnasium.vector.VectorEnv`` wrapper.
"""

from .env import MetaTaskEnv
from .generator import generate_template, generate_templates
from .named import NAMED, named_task
from .template import Template, acceptance, accepted, load_templates, save_templates

__all__ = [
    "NAMED",
    "MetaTaskEnv",
    "Template",
    "acceptance",
    "accepted",
    "generate_template",
    "generate_templates",
    "load_templates",
    "named_task",
    "save_templates",
]
