"""The TextEnv protocol shared by every environment, and the stable state digest."""

import hashlib
import os
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class Observation:
    text: str
    admissible_actions: list[str] = field(default_factory=list)
    state_key: str = ""
    reward: float = 0.0
    done: bool = False
    won: bool = False
    valid: bool = True  # False when the action was not admissible (the env state is unchanged)

    def __post_init__(self):
        for name in ("done", "won", "valid"):  # an env's "False" string would count as a win
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)) and value not in (0, 1):
                raise TypeError(f"Observation.{name} must be a bool, got {value!r}")


class TextEnv(Protocol):
    task: str  # the task text shown to the agent
    task_id: str  # identifies the task across processes and runs

    def reset(self) -> Observation: ...

    def step(self, action: str) -> Observation: ...

    def fork(self) -> "TextEnv":
        """An independent env in the same state (branching for adaptive rollout)."""
        ...


def state_digest(*parts: str) -> str:
    """A stable key for a canonical text: identical across processes, nodes and runs (unlike hash())."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def label_root(root, variable):
    """What a dataset label records of its data folder: "shipped", the folder given (absolute), or
    the environment variable's name (resolved where the env runs)."""
    if root == "shipped":
        return "shipped"
    return os.path.abspath(os.path.expanduser(root)) if root else variable


def root_of_label(label):
    """The data folder argument a label's "root" stands for (None: the environment variable's)."""
    root = label.get("root")
    return root if root == "shipped" or (root and os.path.isabs(root)) else None
