"""`openrlhf-3spo train`: OpenRLHF's own PPO entry point (`python -m openrlhf.cli.train_ppo_ray`),
with the plugin loaded (`compat.load_plugin`): the step modes' estimators, `--spo3.*` and their checks.

OpenRLHF builds its parser and validates arguments in its module's `__main__` block, then calls
`train(args)`; this runs that block as it is, with `CLI_SUBSTITUTED` in place while it runs.
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
from openrlhf_3spo.plugin import STEP_ESTIMATORS
from openrlhf_3spo.plugin import cpu as cpu_mode
from openrlhf_3spo.settings import Settings

DATA_FILES = (".json", ".jsonl", ".parquet", ".csv", ".arrow")  # a dataset named by one is a local file


# (module, symbol, what replaces it) while OpenRLHF's CLI module runs, on both installs
CLI_SUBSTITUTED = (
    ("ray", "is_initialized", "starts Ray with the plugin's runtime env (`ray_runtime_env`), then True: "
     "OpenRLHF's `train` asks it first"),
    ("openrlhf.utils", "get_strategy", "stops a --dry-run; otherwise shows what the imports wrote to stderr"),
)


class _DryRun(Exception):
    def __init__(self, config):
        super().__init__("dry run")
        self.config = config


def problems(args, cpu=False):
    """One line per inconsistent setting (OpenRLHF's hierarchical args)."""
    if cpu and cpu_mode.problems(args):
        return cpu_mode.problems(args)
    found = Settings.problems(vars(args.spo3))
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
    if estimator not in STEP_ESTIMATORS and agent_estimator is None:  # OpenRLHF's own modes: its own checks
        return []
    found = [f"{flag} {path}: no such file or folder" for flag, path in _local_paths(args) if not os.path.exists(path)]
    if agent_estimator != estimator:
        found.append(f"--advantage_estimator {estimator} needs --train.agent_func_path naming a {estimator} agent "
                     f"function (its path: openrlhf-3spo agent-file alfworld {STEP_ESTIMATORS[estimator]})")
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
    """While OpenRLHF's CLI module runs: its argv, and `CLI_SUBSTITUTED`. On OpenRLHF 0.11.2 as
    released, also the parser that reads the plugin's registrations (`compat.ParserWithPlugins`)."""
    import ray

    import openrlhf.utils
    from openrlhf_3spo.plugin import compat

    get_strategy, is_initialized = openrlhf.utils.get_strategy, ray.is_initialized

    def ray_started():
        if not dry_run and not is_initialized():
            ray.init(runtime_env=ray_runtime_env(cpu), **(cpu_mode.ray_init_resources() if cpu else {}))
        return True

    def strategy_or_stop(args):
        if dry_run:
            raise _DryRun(args)
        show_held()  # the run validated
        return get_strategy(args)

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(sys, "argv", ["train_ppo_ray", *argv]))
        stack.enter_context(mock.patch.object(ray, "is_initialized", ray_started))
        stack.enter_context(mock.patch.object(openrlhf.utils, "get_strategy", strategy_or_stop))
        if not compat.openrlhf_has_plugin_hooks():
            sys.modules["argparse"] = compat.argparse_with_plugins()  # as the CLI module's `import argparse` finds it
            stack.callback(sys.modules.__setitem__, "argparse", argparse)
        yield


def ray_runtime_env(cpu=False):
    """The runtime env for ray.init / ray job submit: OpenRLHF's own env vars, the worker setup hook
    that loads the plugin, and under --cpu the CPU mode's environment."""
    from openrlhf_3spo.plugin.compat import RAY_WORKER_SETUP_HOOK

    env = {
        "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "true"),
        "NCCL_DEBUG": os.environ.get("NCCL_DEBUG", "WARN"),
        "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": os.environ.get("RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", "1"),
        **(cpu_mode.runtime_env_vars() if cpu else {}),
    }
    return {"env_vars": env, "worker_process_setup_hook": RAY_WORKER_SETUP_HOOK}


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
    from openrlhf_3spo.plugin import compat

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
                compat.check_openrlhf_version()
                if cpu:
                    argv = cpu_mode.cpu_argv(argv)
                    cpu_mode.enter()
                elif dry_run:
                    cpu_mode.flash_attn_stand_in()
                compat.load_plugin()
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
