"""`openrlhf-3spo train`: OpenRLHF's own PPO entry point (`python -m openrlhf.cli.train_ppo_ray`),
which trains with 3SPO (or GiGPO).

OpenRLHF builds its parser and validates arguments in its module's `__main__` block, then calls
`train(args)`. This runs that block as it is. Where OpenRLHF carries the patch series of patches/,
OpenRLHF itself loads the plugin, which adds `--spo3.*` and the `3spo` and `gigpo` estimators (`plugin.py`). On
OpenRLHF 0.11.2 as released, the parser learns them here, Ray starts with the plugin's worker setup
hook, and the driver registers the plugin before training (`register.py`). Either way
`--advantage_estimator` is an alias of `--algo.advantage.estimator`, `--dry-run` stops after
validation and prints the resolved configuration, and `--cpu` runs the same trainer on a machine
with no GPU, for tiny models (`cpu.py`).
"""

import argparse
import contextlib
import importlib
import io
import json
import os
import runpy
import sys
import tempfile
import warnings
from types import SimpleNamespace
from unittest import mock

from openrlhf_3spo.agents import step_estimator
from openrlhf_3spo.openrlhf import PLUGIN_ESTIMATORS
from openrlhf_3spo.openrlhf import cpu as cpu_mode
from openrlhf_3spo.settings import Settings, add_flags

ESTIMATOR_DEST = "algo.advantage.estimator"
DATA_FILES = (".json", ".jsonl", ".parquet", ".csv", ".arrow")  # a dataset named by one is a local file


class _DryRun(Exception):
    def __init__(self, config):
        super().__init__("dry run")
        self.config = config


def problems(args, cpu=False):
    """One line per inconsistent setting (OpenRLHF's hierarchical args)."""
    if cpu and cpu_mode.problems(args):
        return cpu_mode.problems(args)
    found = Settings.from_namespace(args.spo3).problems()
    if found:
        return found
    estimator, agent = args.algo.advantage.estimator, args.train.agent_func_path
    if agent and not os.path.isfile(agent):
        return [f"--train.agent_func_path {agent}: no such file"]
    agent_estimator = step_estimator(agent) if agent else None
    if args.spo3.decoding == "constrained" and agent_estimator is None:
        return ["--spo3.decoding constrained needs a step-mode agent function (3spo, grpo or gigpo): "
                "OpenRLHF's multi-turn executor lets the model write freely"]
    if agent_estimator and agent_estimator != estimator:
        return [f"the agent function {os.path.basename(agent)} trains with --advantage_estimator {agent_estimator}, "
                f"not {estimator}"]
    if estimator not in PLUGIN_ESTIMATORS and agent_estimator is None:  # OpenRLHF's own modes: its own checks
        return []
    found = [f"{flag} {path}: no such file or folder" for flag, path in _local_paths(args) if not os.path.exists(path)]
    if agent_estimator != estimator:
        found.append(f"--advantage_estimator {estimator} needs --train.agent_func_path naming a {estimator} agent "
                     f"function (its path: openrlhf-3spo agent-file alfworld {estimator})")
    # the step modes (3SPO, step-wise GRPO, GiGPO) train on whole batches of tasks, generated in step
    checks = [
        (not args.train.async_enable, "the step modes need synchronous rollouts: drop --train.async_enable"),
        (not args.algo.dynamic_filtering_enable, "the step modes do not support --algo.dynamic_filtering_enable"),
        (args.rollout.n_samples_per_prompt >= 1, "--rollout.n_samples_per_prompt must be >= 1"),
    ]
    return found + [message for ok, message in checks if not ok]


def _local_paths(args):
    """(flag, path) for the model and datasets named by a local path; hub ids ("org/name") are
    OpenRLHF's to fetch. A dataset flag may list several, comma-separated."""
    named = [("--actor.model_name_or_path", args.actor.model_name_or_path)]
    for flag, value in (("--data.prompt_dataset", args.data.prompt_dataset), ("--eval.dataset", args.eval.dataset)):
        named += [(flag, part.strip()) for part in (value or "").split(",") if part.strip()]
    local = lambda path: path.startswith(("/", ".", "~")) or path.endswith(DATA_FILES)  # noqa: E731
    return [(flag, os.path.expanduser(path)) for flag, path in named if path and local(path)]


def _one_line_error(message):
    sys.exit(f"openrlhf-3spo: error: {message}")


def _extend(parser):
    parser.error = _one_line_error  # not OpenRLHF's whole usage text
    for action in parser._actions:
        if action.dest == ESTIMATOR_DEST and action.choices:
            action.choices = list(action.choices) + [name for name in PLUGIN_ESTIMATORS if name not in action.choices]
    add_flags(parser)


@contextlib.contextmanager
def _stderr_held(held):
    """What runs inside writes to stderr, C libraries included (file descriptor 2), into `held`, a
    StringIO: heavy imports print notes that would stand before a one-line error."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as into:
        os.dup2(into.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            into.seek(0)
            held.write(into.read().decode(errors="replace"))


@contextlib.contextmanager
def _running_openrlhf(argv, dry_run, cpu, show_held):
    """While OpenRLHF's CLI module runs: its argv; Ray started for the run (its setup hook registers
    the plugin in every worker); a --dry-run stopped before training. On OpenRLHF 0.11.2 as released,
    also the parser extended with 3SPO's flags and checks; where OpenRLHF has the patch series, it
    loads the plugin itself (`plugin.py`)."""
    import ray

    import openrlhf.utils
    from openrlhf_3spo.openrlhf import openrlhf_has_plugin_hooks
    from openrlhf_3spo.openrlhf.register import ray_runtime_env, register

    parse_args = argparse.ArgumentParser.parse_args
    get_strategy = openrlhf.utils.get_strategy
    hooked = openrlhf_has_plugin_hooks()

    def start_ray():
        if not dry_run and not ray.is_initialized():
            ray.init(runtime_env=ray_runtime_env(cpu), **(cpu_mode.ray_init_resources() if cpu else {}))

    def parse_with_spo3(parser, args=None, namespace=None):
        if not any(action.dest == ESTIMATOR_DEST for action in parser._actions):  # not OpenRLHF's parser
            return parse_args(parser, args, namespace)
        _extend(parser)
        ns = parse_args(parser, argv, namespace)
        from openrlhf.utils.config import hierarchize

        found = problems(hierarchize(ns), cpu)
        if found:
            _one_line_error(found[0])
        start_ray()
        return ns

    def strategy_or_stop(args):
        if dry_run:
            raise _DryRun(args)
        show_held()  # the run validated
        if not hooked:
            register()
        return get_strategy(args)

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(sys, "argv", ["train_ppo_ray", *argv]))
        stack.enter_context(mock.patch.object(openrlhf.utils, "get_strategy", strategy_or_stop))
        if hooked:
            start_ray()
        else:
            stack.enter_context(mock.patch.object(argparse.ArgumentParser, "parse_args", parse_with_spo3))
        stack.enter_context(mock.patch.object(ray, "is_initialized", (lambda: True) if dry_run else ray.is_initialized))
        yield


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

    # torch's note on the pynvml package it imports: nothing a user can act on, and it would stand
    # before a one-line error
    warnings.filterwarnings("ignore", message="The pynvml package is deprecated", category=FutureWarning)
    # runpy's note that the module it runs as __main__ was imported first (for its imports, on purpose)
    warnings.filterwarnings("ignore", message=".*found in sys.modules after import of package", category=RuntimeWarning)
    stdout = sys.stdout
    # An error is one line with nothing before it, and a dry run's stdout is its JSON only: what the
    # imports write to stderr, and a dry run's stdout (DeepSpeed and vLLM print), go to stderr once
    # the run validated.
    printed, held = io.StringIO(), io.StringIO()

    def show_held():
        sys.stderr.write(held.getvalue() + printed.getvalue())
        held.seek(0), held.truncate()

    with contextlib.redirect_stdout(printed if dry_run else stdout):
        try:
            with _stderr_held(held):
                check_openrlhf_version()
                if cpu:
                    argv = cpu_mode.cpu_argv(argv)
                    cpu_mode.enter()
                importlib.import_module("openrlhf.cli.train_ppo_ray")  # for its imports; its __main__ block runs below
        except (RuntimeError, ValueError) as error:
            _one_line_error(error)
        try:
            with _running_openrlhf(argv, dry_run, cpu, show_held):
                runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__", alter_sys=False)
        except _DryRun as done:
            show_held()
            print(json.dumps(_plain(done.config), indent=2, sort_keys=True), file=stdout)
        except AssertionError as error:  # OpenRLHF validates with asserts
            _one_line_error(error)
    return 0
