"""`openrlhf-3spo train`: OpenRLHF's own PPO entry point (`python -m openrlhf.cli.train_ppo_ray`),
with the 3SPO flags and estimator added to its parser.

OpenRLHF builds its parser and validates arguments in its module's `__main__` block, then calls
`train(args)`. This runs that block as it is, with three additions: the parser learns `--spo3.*` and
`--algo.advantage.estimator 3spo` (alias `--advantage_estimator`) and checks 3SPO settings; Ray
starts with the plugin's worker setup hook; the state-score actors start before training.
`--dry-run` stops after validation and prints the resolved configuration. `--cpu` runs the same
trainer on a machine with no GPU, for tiny models (`cpu.py`).
"""

import argparse
import json
import os
import runpy
import sys
import uuid
from datetime import datetime
from contextlib import contextmanager
from types import SimpleNamespace
from unittest import mock

from openrlhf_3spo.agents import step_estimator
from openrlhf_3spo.openrlhf import cpu as cpu_mode
from openrlhf_3spo.settings import Settings, add_flags

ESTIMATOR_DEST = "algo.advantage.estimator"


class _DryRun(Exception):
    def __init__(self, config):
        super().__init__("dry run")
        self.config = config


def problems(ns, cpu=False):
    """One line per inconsistent setting (flat namespace, as parsed)."""
    if cpu and cpu_mode.problems(ns):
        return cpu_mode.problems(ns)
    settings = Settings(**{name[len("spo3."):]: value for name, value in vars(ns).items() if name.startswith("spo3.")})
    found = settings.problems()
    if found:
        return found
    estimator, agent = getattr(ns, ESTIMATOR_DEST), getattr(ns, "train.agent_func_path")
    agent_estimator = step_estimator(agent) if agent and os.path.isfile(agent) else None
    if agent_estimator and agent_estimator != estimator:
        return [f"the agent function {os.path.basename(agent)} trains with --advantage_estimator {agent_estimator}, "
                f"not {estimator}"]
    if estimator != "3spo" and agent_estimator is None:  # OpenRLHF's own modes: its own checks
        return []
    found = []
    if agent_estimator != estimator:
        found.append("--advantage_estimator 3spo needs --train.agent_func_path naming a 3SPO agent function "
                     "(e.g. openrlhf_3spo/agents/alfworld_3spo.py)")
    # the step modes (3SPO, step-wise GRPO) train on whole batches of tasks, generated in step
    checks = [
        (not getattr(ns, "train.async_enable", False), "the step modes need synchronous rollouts: drop --train.async_enable"),
        (not getattr(ns, "algo.dynamic_filtering_enable", False), "the step modes do not support --algo.dynamic_filtering_enable"),
        (getattr(ns, "rollout.n_samples_per_prompt") >= 1, "--rollout.n_samples_per_prompt must be >= 1"),
    ]
    return found + [message for ok, message in checks if not ok]


def _one_line_error(message):
    sys.exit(f"openrlhf-3spo: error: {message}")


def _extend(parser):
    parser.error = _one_line_error  # not OpenRLHF's whole usage text
    for action in parser._actions:
        if action.dest == ESTIMATOR_DEST and action.choices and "3spo" not in action.choices:
            action.choices = list(action.choices) + ["3spo"]
    add_flags(parser)


_STATE_ACTORS = []  # the driver holds the handles: the actors live as long as the run


@contextmanager
def _openrlhf_patched(argv, dry_run, cpu):
    import ray

    import openrlhf.utils
    from openrlhf_3spo.openrlhf.register import ray_runtime_env, register

    parse_args = argparse.ArgumentParser.parse_args
    get_strategy = openrlhf.utils.get_strategy

    def parse_with_spo3(parser, args=None, namespace=None):
        if not any(action.dest == ESTIMATOR_DEST for action in parser._actions):  # not OpenRLHF's parser
            return parse_args(parser, args, namespace)
        _extend(parser)
        ns = parse_args(parser, argv, namespace)
        found = problems(ns, cpu)
        if found:
            _one_line_error(found[0])
        if not dry_run and not ray.is_initialized():
            ray.init(runtime_env=ray_runtime_env(cpu), **(cpu_mode.ray_init_resources() if cpu else {}))
        return ns

    def strategy_after_spo3(args):
        if dry_run:
            raise _DryRun(args)
        register()
        if args.algo.advantage.estimator == "3spo":
            _STATE_ACTORS.append(_start_state_actors(args))
        return get_strategy(args)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_with_spo3), mock.patch.object(
        openrlhf.utils, "get_strategy", strategy_after_spo3
    ), mock.patch.object(ray, "is_initialized", (lambda: True) if dry_run else ray.is_initialized):
        yield


def live_snapshot_dir(ckpt_path):
    """Where this run's state actors snapshot every version, for Ray to restart a crashed one from:
    a folder of its own, so a new run never inherits an old run's statistics (a resumed run gets
    the checkpointed table, through --ckpt.load_enable)."""
    run = f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    return os.path.join(ckpt_path, "spo3_live", run)


def _start_state_actors(args):
    from openrlhf_3spo.state.actor import StateScores

    spo3 = args.spo3
    return StateScores.create(
        spo3.state_actor,
        num_shards=spo3.score_shards,
        snapshot_dir=live_snapshot_dir(args.ckpt.path),
        alpha=spo3.alpha,
        xi=spo3.xi,
        zeta=spo3.zeta,
        g_max=spo3.g_max,
    )


def _plain(value):
    if isinstance(value, (argparse.Namespace, SimpleNamespace)):
        return {k: _plain(v) for k, v in vars(value).items()}
    return value if isinstance(value, (str, int, float, bool, type(None), list, tuple)) else repr(value)


def main(argv):
    dry_run, cpu = "--dry-run" in argv, "--cpu" in argv
    argv = [a for a in argv if a not in ("--dry-run", "--cpu")]
    # OpenRLHF <= 0.10's flag name, as users know it
    argv = ["--algo.advantage.estimator" if a == "--advantage_estimator" else a for a in argv]
    argv = [a.replace("--advantage_estimator=", "--algo.advantage.estimator=", 1) for a in argv]
    from openrlhf_3spo.openrlhf.register import check_openrlhf_version

    try:
        check_openrlhf_version()
        if cpu:
            argv = cpu_mode.cpu_argv(argv)
            cpu_mode.enter()
    except (RuntimeError, ValueError) as error:
        _one_line_error(error)
    try:
        with _openrlhf_patched(argv, dry_run, cpu):
            runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__", alter_sys=False)
    except _DryRun as done:
        print(json.dumps(_plain(done.config), indent=2, sort_keys=True))
        return 0
    except AssertionError as error:  # OpenRLHF validates with asserts
        _one_line_error(error)
    return 0
