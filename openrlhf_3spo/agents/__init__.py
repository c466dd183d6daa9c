"""Agent functions for OpenRLHF's --train.agent_func_path, one file per env and mode.

    alfworld_multiturn.py   ALFWorld in OpenRLHF's plain multi-turn mode (the GRPO baseline)
    alfworld_3spo.py        ALFWorld with the 3SPO executor
    webshop_multiturn.py    WebShop, plain multi-turn mode
    webshop_3spo.py         WebShop with the 3SPO executor
"""

import os

AGENTS_DIR = os.path.dirname(os.path.abspath(__file__))


def agent_file(env_name, mode):
    """Path of the agent-function file for an env ("alfworld") and mode ("multiturn")."""
    path = os.path.join(AGENTS_DIR, f"{env_name}_{mode}.py")
    if not os.path.exists(path):
        raise ValueError(f"no agent function for env {env_name!r} in mode {mode!r} ({path})")
    return path
