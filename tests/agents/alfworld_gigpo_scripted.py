"""openrlhf_3spo/agents/alfworld_gigpo.py over the scripted engine (tests/agents/scripted.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # OpenRLHF loads this file by path

from scripted import scripted  # noqa: E402

from openrlhf_3spo.agents.alfworld_gigpo import AgentExecutor as Executor  # noqa: E402

AgentExecutor = scripted(Executor)
