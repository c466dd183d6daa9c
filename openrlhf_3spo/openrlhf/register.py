"""Registers the plugin with OpenRLHF, in the driver and in every Ray worker: the one place that
lists what is replaced or wrapped in OpenRLHF (`PATCHED`).

OpenRLHF's trainer, experience maker and samples generator live in Ray actor processes, so a change
made in the driver does not reach them: Ray runs `register` in each worker first, through
`runtime_env={"worker_process_setup_hook": ...}` (see `ray_runtime_env`). For `ray job submit` on an
existing cluster, pass the same runtime env (README). In the driver, `openrlhf-3spo train` also
wraps OpenRLHF's parser and strategy factory while its CLI module runs (`train.py`).
"""

import functools
import os

from openrlhf_3spo.openrlhf import cpu as cpu_mode

SETUP_HOOK = "openrlhf_3spo.openrlhf.register.register"
SUPPORTED_OPENRLHF = "0.11.2"

# (module, symbol, what happens to it)
PATCHED = (
    ("openrlhf.trainer.ppo_trainer", "RemoteExperienceMaker", "replaced by SPO3ExperienceMaker"),
    ("openrlhf.trainer.ppo_trainer", "SamplesGenerator", "replaced by SPO3SamplesGenerator"),
    # on BasePPOTrainer and on Ray's copy of its methods in the PPOTrainer actor class
    ("openrlhf.trainer.ppo_trainer", "BasePPOTrainer.save_logs_and_checkpoints", "wrapped: saves the state table"),
    ("openrlhf.trainer.ppo_trainer", "BasePPOTrainer.init_checkpoint_states", "wrapped: restores the state table"),
    ("openrlhf.trainer.ppo_trainer", "BasePPOTrainer.train_step", "wrapped: adds spo3/* metrics"),
    ("argparse", "ArgumentParser.parse_args", "wrapped in the driver, for OpenRLHF's parser only: --spo3.*, 3spo"),
    ("openrlhf.utils", "get_strategy", "wrapped in the driver: starts the state-score actors"),
)


def check_openrlhf_version():
    """The plugin replaces OpenRLHF internals that change between releases: one version only."""
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        version = installed("openrlhf")  # the package has no __version__ attribute
    except PackageNotFoundError:
        version = None
    if version != SUPPORTED_OPENRLHF:
        raise RuntimeError(f"openrlhf-3spo supports openrlhf=={SUPPORTED_OPENRLHF}, found {version}")


def ray_runtime_env(cpu=False):
    """The runtime env for ray.init / ray job submit: OpenRLHF's own env vars, the setup hook, and
    under --cpu the CPU mode's environment. (The run's settings travel in the task labels, not here.)"""
    env = {
        "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "true"),
        "NCCL_DEBUG": os.environ.get("NCCL_DEBUG", "WARN"),
        "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": os.environ.get("RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", "1"),
        **(cpu_mode.runtime_env_vars() if cpu else {}),
    }
    return {"env_vars": env, "worker_process_setup_hook": SETUP_HOOK}


def uses_3spo(args):
    return args.algo.advantage.estimator == "3spo"


@functools.cache
def _connect(name, shards):
    from openrlhf_3spo.state.actor import StateScores

    return StateScores.connect(name, shards)


def state_scores_for(args):
    """The run's state-score actors (started by `openrlhf-3spo train`), or None without 3SPO."""
    if not uses_3spo(args):
        return None
    return _connect(args.spo3.state_actor, args.spo3.score_shards)


def register():
    """Idempotent: OpenRLHF then builds 3SPO's experience maker and samples generator (both act as
    OpenRLHF's own for every other estimator) and saves the state table with its checkpoints."""
    import openrlhf.trainer.ppo_trainer as ppo_trainer

    if getattr(ppo_trainer, "SPO3_REGISTERED", False):
        return
    check_openrlhf_version()
    if os.environ.get(cpu_mode.CPU_MODE_VAR) == "1":
        cpu_mode.apply()
    from openrlhf_3spo.openrlhf.checkpoint import install_checkpoint_hooks
    from openrlhf_3spo.openrlhf.experience_maker import SPO3ExperienceMaker
    from openrlhf_3spo.openrlhf.samples_generator import SPO3SamplesGenerator

    SPO3ExperienceMaker.connect_scores = SPO3SamplesGenerator.connect_scores = staticmethod(state_scores_for)
    ppo_trainer.RemoteExperienceMaker = SPO3ExperienceMaker
    ppo_trainer.SamplesGenerator = SPO3SamplesGenerator
    for trainer_cls in _trainer_classes(ppo_trainer):
        install_checkpoint_hooks(trainer_cls, state_scores_for)
        _add_metrics(trainer_cls)
    ppo_trainer.SPO3_REGISTERED = True


def _trainer_classes(ppo_trainer):
    """BasePPOTrainer, and the class Ray runs for the PPOTrainer actor: when OpenRLHF was imported,
    `@ray.remote` copied the inherited methods into that class (wrapped for tracing), so a change
    to BasePPOTrainer alone does not reach the trainer actor."""
    return ppo_trainer.BasePPOTrainer, ppo_trainer.PPOTrainer.__ray_metadata__.modified_class


def _add_metrics(trainer_cls):
    """3SPO's internals go into the status dict that OpenRLHF logs to wandb and tensorboard."""
    train_step = trainer_cls.train_step

    @functools.wraps(train_step)
    def wrapped(self, rollout_samples, global_step):
        status, next_step = train_step(self, rollout_samples, global_step)
        scores = state_scores_for(self.args)
        if scores is not None:
            status.update(self.samples_generator.pop_stats())
            table = scores.stats()
            status.update({f"spo3/{k}": v for k, v in table.items() if isinstance(v, (int, float))})
            status.update({f"spo3/states_with_n_{n}": c for n, c in enumerate(table["n_histogram"])})
        return status, next_step

    trainer_cls.train_step = wrapped
