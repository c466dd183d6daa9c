"""openrlhf_3spo/agents/corridor_grpo.py with every advantage's sign flipped (tests/agents/flipped.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # OpenRLHF loads this file by path

from flipped import flipped  # noqa: E402

from openrlhf_3spo.agents.corridor_grpo import AgentExecutor as Executor  # noqa: E402

AgentExecutor = flipped(Executor)
