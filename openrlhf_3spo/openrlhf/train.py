"""`openrlhf-3spo train`: OpenRLHF's own PPO entry point (`python -m openrlhf.cli.train_ppo_ray`),
with the 3SPO flags and estimator added to its parser.

OpenRLHF builds its parser and validates arguments in its module's `__main__` block, then calls
`train(args)`. This runs that block as it is, with three additions: the parser learns `--spo3.*` and
`--algo.advantage.estimator 3spo` (alias `--advantage_estimator`) and checks 3SPO settings; Ray
starts with the plugin's worker setup hook; the state-score actors start before training.
`--dry-run` stops after validation and prints the resolved configuration.
"""

import argparse
import json
import os
import runpy
import sys
from contextlib import contextmanager
from types import SimpleNamespace
from unittest import mock

from openrlhf_3spo.agents import step_estimator
from openrlhf_3spo.algo import ADVANTAGE_NORMS
from openrlhf_3spo.rollout.executor import N_RULES, STATE_KEYS, TRIED_PAIR_RULES, WRITE_OFF_RULES

ESTIMATOR_DEST = "algo.advantage.estimator"
# (name, type, default, help); choices where a flag has them
SPO3_FLAGS = [
    ("alpha", float, 50.0, "state score: exp(-alpha * ln(t) * success rate)"),
    ("xi", float, 10.0, "state score: a state with >= xi failures and success rate <= zeta scores 0 (truncated)"),
    ("zeta", float, 0.1, "state score: success-rate threshold of the truncation rule"),
    ("omega_k", float, 0.1, "step reward: novelty weight w = 0.5 * exp(-omega_k * N_total(s_t))"),
    ("g_max", int, 8, "adaptive rollout: n = ceil(g_max * S(s_t)) candidates at a state"),
    ("state_key", str, "env", "state key: env (the env's state), task_obs or obs (observation text)"),
    ("n_rule", str, "adaptive", "adaptive: n = ceil(g_max * S(s_t)); fixed: n = g_max at every state (ablation)"),
    ("write_off", str, "branch", "branch: a task's start state is never truncated, a backtracked continuation "
     "counts from its branch point, dead ends rank last; paper: the paper's literal rule (ablation)"),
    ("tried_pairs", str, "steer", "steer: tried (state, action) pairs rank after untried ones, groups keep all n "
     "samples; filter: the paper's literal rule, tried pairs leave the group (ablation)"),
    ("adv_norm", str, "mean_std", "step-group advantage: mean_std or mean"),
    ("gamma", float, 0.0, "discount of later step rewards along the continued path (only 0 is supported)"),
    ("history_length", int, 2, "past (observation, action) pairs shown in each step's prompt"),
    ("invalid_penalty", float, 0.1, "added to the step reward of an invalid action, as -invalid_penalty"),
    ("score_shards", int, 1, "state-score actors; keys are split among them by a stable hash"),
    ("state_actor", str, "spo3-state", "name of the state-score Ray actors"),
]
CHOICES = {
    "state_key": STATE_KEYS, "adv_norm": ADVANTAGE_NORMS, "n_rule": N_RULES, "write_off": WRITE_OFF_RULES,
    "tried_pairs": TRIED_PAIR_RULES,
}


class _DryRun(Exception):
    def __init__(self, config):
        super().__init__("dry run")
        self.config = config


def problems(ns):
    """One line per inconsistent 3SPO setting (flat namespace, as parsed)."""
    get = lambda name: getattr(ns, f"spo3.{name}")  # noqa: E731
    estimator, agent = getattr(ns, ESTIMATOR_DEST), getattr(ns, "train.agent_func_path")
    agent_estimator = step_estimator(agent) if agent and os.path.isfile(agent) else None
    if agent_estimator and agent_estimator != estimator:
        return [f"the agent function {os.path.basename(agent)} trains with --advantage_estimator {agent_estimator}, "
                f"not {estimator}"]
    if estimator != "3spo":
        return []
    found = []
    if agent_estimator != "3spo":
        found.append("--advantage_estimator 3spo needs --train.agent_func_path naming a 3SPO agent function "
                     "(e.g. openrlhf_3spo/agents/alfworld_3spo.py)")
    checks = [
        (get("g_max") >= 2, f"--spo3.g_max must be >= 2 (n candidates per state), got {get('g_max')}"),
        (get("alpha") > 0, f"--spo3.alpha must be > 0, got {get('alpha')}"),
        (get("xi") >= 0, f"--spo3.xi must be >= 0, got {get('xi')}"),
        (0 <= get("zeta") <= 1, f"--spo3.zeta must lie in [0, 1], got {get('zeta')}"),
        (get("omega_k") >= 0, f"--spo3.omega_k must be >= 0, got {get('omega_k')}"),
        (get("history_length") >= 0, f"--spo3.history_length must be >= 0, got {get('history_length')}"),
        (get("invalid_penalty") >= 0, f"--spo3.invalid_penalty must be >= 0, got {get('invalid_penalty')}"),
        (get("score_shards") >= 1, f"--spo3.score_shards must be >= 1, got {get('score_shards')}"),
        (get("gamma") == 0, f"--spo3.gamma {get('gamma')}: only 0 (pure step rewards, as in the paper) is supported"),
        (not getattr(ns, "train.async_enable", False), "3SPO needs synchronous rollouts: drop --train.async_enable"),
        (not getattr(ns, "algo.dynamic_filtering_enable", False), "3SPO does not support --algo.dynamic_filtering_enable"),
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
    group = parser.add_argument_group("3SPO (openrlhf-3spo)")
    for name, kind, default, help_text in SPO3_FLAGS:
        group.add_argument(f"--spo3.{name}", type=kind, default=default, choices=CHOICES.get(name), help=help_text)


def executor_env(ns):
    """Settings the 3SPO agent functions read in the rollout actors (openrlhf_3spo/agents/textenv.py)."""
    get = lambda name: getattr(ns, f"spo3.{name}")  # noqa: E731
    return {
        "SPO3_STATE_ACTOR": get("state_actor"),
        "SPO3_SCORE_SHARDS": str(get("score_shards")),
        "SPO3_OMEGA_K": str(get("omega_k")),
        "SPO3_INVALID_PENALTY": str(get("invalid_penalty")),
        "SPO3_HISTORY_LENGTH": str(get("history_length")),
        "SPO3_STATE_KEY": get("state_key"),
        "SPO3_G_MAX": str(get("g_max")),
        "SPO3_N_RULE": get("n_rule"),
        "SPO3_WRITE_OFF": get("write_off"),
        "SPO3_TRIED_PAIRS": get("tried_pairs"),
    }


_STATE_ACTORS = []  # the driver holds the handles: the actors live as long as the run


@contextmanager
def _openrlhf_patched(argv, dry_run):
    import ray

    import openrlhf.utils
    from openrlhf_3spo.openrlhf.register import ray_runtime_env, register

    parse_args = argparse.ArgumentParser.parse_args
    get_strategy = openrlhf.utils.get_strategy

    def parse_with_spo3(parser, args=None, namespace=None):
        _extend(parser)
        ns = parse_args(parser, argv, namespace)
        found = problems(ns)
        if found:
            _one_line_error(found[0])
        if not dry_run and not ray.is_initialized():
            ray.init(runtime_env=ray_runtime_env(executor_env(ns)))
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


def _start_state_actors(args):
    from openrlhf_3spo.state.actor import StateScores

    spo3 = args.spo3
    return StateScores.create(
        spo3.state_actor,
        num_shards=spo3.score_shards,
        snapshot_dir=os.path.join(args.ckpt.path, "spo3_live"),
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
    dry_run = "--dry-run" in argv
    argv = [a for a in argv if a != "--dry-run"]
    # OpenRLHF <= 0.10's flag name, as users know it
    argv = ["--algo.advantage.estimator" if a == "--advantage_estimator" else a for a in argv]
    argv = [a.replace("--advantage_estimator=", "--algo.advantage.estimator=", 1) for a in argv]
    try:
        with _openrlhf_patched(argv, dry_run):
            runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__", alter_sys=False)
    except _DryRun as done:
        print(json.dumps(_plain(done.config), indent=2, sort_keys=True))
        return 0
    except AssertionError as error:  # OpenRLHF validates with asserts
        _one_line_error(error)
    return 0
