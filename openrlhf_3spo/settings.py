"""Every setting of the step-sample agent modes, defined once: name, type, default, choices, help and
check. `openrlhf-3spo train` builds its `--spo3.*` flags and their checks from it, `--dry-run` prints
the values, and the run's values travel to the rollout executors inside each task's label (so
`ray job submit` and other nodes get the same values, never a shell's environment).
"""

import math
from dataclasses import asdict, dataclass, field, fields

from openrlhf_3spo.algo import ADVANTAGE_NORMS

STATE_KEYS = ("env", "task_obs", "obs")
N_RULES = ("adaptive", "fixed")
WRITE_OFF_RULES = ("branch", "paper")
TRIED_PAIR_RULES = ("steer", "filter")
BACKTRACK_RULES = ("recent", "best", "shallowest", "sampled", "none")
CONTINUE_RULES = ("best", "sampled")
WEBSHOP_REWARDS = ("success", "score")
DECODINGS = ("free", "constrained")


def _setting(default, help_text, choices=None, low=None, high=None, low_open=False):
    return field(default=default, metadata={"help": help_text, "choices": choices, "low": low, "high": high, "low_open": low_open})


@dataclass(frozen=True)
class Settings:
    alpha: float = _setting(50.0, "state score (eq. 1): exp(-alpha * ln(t) * success rate)", low=0, low_open=True)
    xi: float = _setting(10.0, "state score: a state with >= xi failures and success rate <= zeta scores 0 (written off)", low=0)
    zeta: float = _setting(0.1, "state score: success-rate threshold of the write-off rule", low=0, high=1)
    omega_k: float = _setting(0.1, "step reward (eq. 2): novelty weight w = 0.5 * exp(-omega_k * N_total(s_t))", low=0)
    invalid_penalty: float = _setting(0.1, "step reward: -invalid_penalty for an invalid action", low=0)
    g_max: int = _setting(8, "adaptive rollout (eq. 3): n = ceil(g_max * S(s_t)) candidates at a state", low=2, high=1024)
    n_rule: str = _setting("adaptive", "adaptive: eq. 3; fixed: n = g_max at every state (ablation)", N_RULES)
    write_off: str = _setting(
        "branch", "branch: a task's start state is never truncated, a backtracked continuation counts from its "
        "branch point, dead ends rank last; paper: the paper's literal rule (ablation)", WRITE_OFF_RULES)
    tried_pairs: str = _setting(
        "steer", "steer: tried (state, action) pairs rank after untried ones, groups keep all n samples; "
        "filter: the paper's literal rule, tried pairs leave the group (ablation)", TRIED_PAIR_RULES)
    backtrack: str = _setting(
        "recent", "which pending branch a finished trajectory backtracks to: the most recent, the best-ranked over "
        "the whole stack, the shallowest, a sampled one; none: B independent episodes from the start state",
        BACKTRACK_RULES)
    continue_along: str = _setting(
        "best", "the candidate a path continues along: the best-ranked, or a sampled member of the group",
        CONTINUE_RULES)
    state_key: str = _setting("env", "state key: env (the env's state), task_obs or obs (observation text)", STATE_KEYS)
    adv_norm: str = _setting("mean_std", "step-group advantage: (R - mean) / std, or R - mean", ADVANTAGE_NORMS)
    gigpo_gamma: float = _setting(0.95, "GiGPO: discount of the step return (GiGPO eq. 5)", low=0, high=1)
    gigpo_step_weight: float = _setting(1.0, "GiGPO: weight of the anchor-state step advantage (GiGPO eq. 8)", low=0)
    gigpo_norm: str = _setting("mean", "GiGPO: mean (mean_norm) or mean_std (mean_std_norm), for both terms", ADVANTAGE_NORMS)
    decoding: str = _setting(
        "free", "free: the model writes its answer; constrained: vLLM's structured outputs let it name only an "
        "admissible action, <action>A</action> (small models that would otherwise never act validly)", DECODINGS)
    history_length: int = _setting(2, "past (observation, action) pairs in each step's prompt (every agent mode)", low=0)
    max_steps: int = _setting(0, "steps per episode (0: the env's own limit: ALFWorld 50, WebShop 15)", low=0)
    env_workers: int = _setting(4, "env worker processes per vLLM rollout actor", low=1, high=256)
    webshop_reward: str = _setting("success", "WebShop episode reward: 10 x success, or the raw score", WEBSHOP_REWARDS)
    score_shards: int = _setting(1, "state-score actors; keys are split among them by a stable hash", low=1, high=1024)
    state_actor: str = _setting("spo3-state", "name of the state-score Ray actors")

    def __post_init__(self):
        # the one check: a Settings value, from flags, a label or code, is always a valid one
        found = Settings.problems(vars(self))
        if found:
            raise ValueError(found[0])

    @staticmethod
    def problems(values, flag_of=lambda name: f"--spo3.{name}"):
        """One line per value out of range among `values` (name -> value; a name left out has its
        default), naming its flag (another CLI's, with `flag_of`)."""
        found = []
        for f in fields(Settings):
            value, meta = values.get(f.name, f.default), f.metadata
            flag = flag_of(f.name)
            numeric = (int,) if f.type is int else (int, float)
            if f.type is not str and (isinstance(value, bool) or not isinstance(value, numeric)):
                found.append(f"{flag} must be {'a whole number' if f.type is int else 'a number'}, got {value!r}")
            elif f.type is str and not isinstance(value, str):
                found.append(f"{flag} must be a string, got {value!r}")
            elif f.type is not str and not math.isfinite(value):
                found.append(f"{flag} must be a finite number, got {value}")
            elif meta["choices"] and value not in meta["choices"]:
                found.append(f"{flag} must be one of {', '.join(meta['choices'])}, got {value!r}")
            elif meta["low"] is not None and (value < meta["low"] or (meta["low_open"] and value == meta["low"])):
                found.append(f"{flag} must be {'>' if meta['low_open'] else '>='} {meta['low']}, got {value}")
            elif meta["high"] is not None and value > meta["high"]:
                found.append(f"{flag} must be <= {meta['high']}, got {value}")
        return found

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_namespace(cls, ns):
        """From the `spo3` namespace of OpenRLHF's parsed args (or any object with the attributes)."""
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls)})


def add_setting(parser, name, flag=None):
    """One setting as a flag: its type, default, choices and help from `Settings` (`--spo3.NAME` in
    training; `openrlhf-3spo evaluate` names a few as `--history-length` and the like)."""
    f = next(f for f in fields(Settings) if f.name == name)
    parser.add_argument(
        flag or f"--{name.replace('_', '-')}", type=f.type, default=f.default, choices=f.metadata["choices"],
        help=f.metadata["help"],
    )


def add_flags(parser):
    """--spo3.NAME for every setting, on an argparse parser."""
    group = parser.add_argument_group("3SPO and step-wise agent modes (openrlhf-3spo)")
    for f in fields(Settings):
        add_setting(group, f.name, f"--spo3.{f.name}")
