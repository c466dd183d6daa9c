"""Agent functions for OpenRLHF's --train.agent_func_path, one file per env and mode.

    alfworld_3spo.py        ALFWorld with the 3SPO executor (--advantage_estimator 3spo)
    alfworld_grpo.py        ALFWorld, step-wise GRPO: the baseline (--advantage_estimator step_grpo)
    alfworld_gigpo.py       ALFWorld, GiGPO over the GRPO mode's episodes (--advantage_estimator gigpo)
    alfworld_multiturn.py   ALFWorld in OpenRLHF's own growing-context multi-turn mode
    webshop_3spo.py, webshop_grpo.py, webshop_gigpo.py, webshop_multiturn.py: the same for WebShop
    corridor_3spo.py, corridor_grpo.py, corridor_gigpo.py: the same for the corridor (a tiny model
        learns it on CPU in minutes)

The 3SPO, GRPO and GiGPO modes yield one training sample per step (their executor class names the estimator
it trains with in `advantage_estimator`); the multi-turn mode yields one per episode.
"""

import functools
import importlib.util
import os

AGENTS_DIR = os.path.dirname(os.path.abspath(__file__))
MODES = ("3spo", "grpo", "gigpo", "multiturn")


def agent_file(env_name, mode):
    """Path of the agent-function file for an env ("alfworld") and mode (one of MODES)."""
    path = os.path.join(AGENTS_DIR, f"{env_name}_{mode}.py")
    if not os.path.exists(path):
        raise ValueError(f"no agent function for env {env_name!r} in mode {mode!r} ({path})")
    return path


@functools.cache
def agent_executor_class(agent_func_path):
    """The AgentExecutor class of an agent-function file, loaded as OpenRLHF's rollout actors load it."""
    spec = importlib.util.spec_from_file_location("agent_module", agent_func_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AgentExecutor


def step_estimator(agent_func_path):
    """The advantage estimator of an agent file whose executor yields step samples ("3spo",
    "step_grpo", "gigpo"), or None."""
    if not agent_func_path:
        return None
    return getattr(agent_executor_class(agent_func_path), "advantage_estimator", None)
