"""The plugin on OpenRLHF 0.11.2 as released, which has no plugin hooks: registration by
substitution at run time, in the driver and in every Ray worker. `PATCHED` lists each replaced or
wrapped symbol. (Where OpenRLHF carries the patch series of patches/, `plugin.py` is used instead.)

OpenRLHF's trainer, experience maker and samples generator live in Ray actor processes, so a change
made in the driver does not reach them: Ray runs `register` in each worker first, through
`runtime_env={"worker_process_setup_hook": ...}` (see `ray_runtime_env`). For `ray job submit` on an
existing cluster, pass the same runtime env (README). In the driver, `openrlhf-3spo train` also
wraps OpenRLHF's parser and strategy factory while its CLI module runs (`train.py`).
"""

import functools
import os

from openrlhf_3spo.openrlhf import cpu as cpu_mode
from openrlhf_3spo.openrlhf import openrlhf_has_plugin_hooks

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
    ("argparse", "ArgumentParser.parse_args", "wrapped in the driver, for OpenRLHF's parser only: --spo3.*, 3spo, gigpo"),
    ("openrlhf.utils", "get_strategy", "wrapped in the driver (on both installs): registers the plugin there, "
     "shows what the imports wrote to stderr once the run validated, or stops a --dry-run"),
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
    if openrlhf_has_plugin_hooks():  # OpenRLHF's own hook, which loads plugin.py
        from openrlhf.utils.plugins import RAY_WORKER_SETUP_HOOK

        return {"env_vars": env, "worker_process_setup_hook": RAY_WORKER_SETUP_HOOK}
    return {"env_vars": env, "worker_process_setup_hook": SETUP_HOOK}


def register():
    """Idempotent: OpenRLHF then builds 3SPO's experience maker and samples generator (both act as
    OpenRLHF's own for every other estimator), and its trainer logs 3SPO's metrics and saves the
    state table with its checkpoints."""
    import openrlhf.trainer.ppo_trainer as ppo_trainer

    if getattr(ppo_trainer, "SPO3_REGISTERED", False):
        return
    check_openrlhf_version()
    if os.environ.get(cpu_mode.CPU_MODE_VAR) == "1":
        cpu_mode.apply()
    from openrlhf_3spo.openrlhf.experience_maker import SPO3ExperienceMaker
    from openrlhf_3spo.openrlhf.samples_generator import SPO3SamplesGenerator

    ppo_trainer.RemoteExperienceMaker = SPO3ExperienceMaker
    ppo_trainer.SamplesGenerator = SPO3SamplesGenerator
    for trainer_cls in _trainer_classes(ppo_trainer):
        install_trainer_hooks(trainer_cls)
    ppo_trainer.SPO3_REGISTERED = True


def _trainer_classes(ppo_trainer):
    """BasePPOTrainer, and the class Ray runs for the PPOTrainer actor: when OpenRLHF was imported,
    `@ray.remote` copied the inherited methods into that class (wrapped for tracing), so a change
    to BasePPOTrainer alone does not reach the trainer actor."""
    return ppo_trainer.BasePPOTrainer, ppo_trainer.PPOTrainer.__ray_metadata__.modified_class


def install_trainer_hooks(trainer_cls):
    """Wraps a BasePPOTrainer class's step, checkpoint save and resume with `trainer_hooks`."""
    from openrlhf_3spo.openrlhf import trainer_hooks

    train_step = trainer_cls.train_step
    save = trainer_cls.save_logs_and_checkpoints
    init = trainer_cls.init_checkpoint_states

    @functools.wraps(train_step)
    def train_step_with_metrics(self, rollout_samples, global_step):
        status, next_step = train_step(self, rollout_samples, global_step)
        trainer_hooks.add_step_metrics(self, status)
        return status, next_step

    @functools.wraps(save)
    def save_logs_and_checkpoints(self, global_step, logs_dict=None, client_states=None):
        save(self, global_step, logs_dict, client_states)
        trainer_hooks.save_table(self, global_step)

    @functools.wraps(init)
    def init_checkpoint_states(self):
        states = init(self)
        trainer_hooks.load_table(self, states)
        return states

    trainer_cls.train_step = train_step_with_metrics
    trainer_cls.save_logs_and_checkpoints = save_logs_and_checkpoints
    trainer_cls.init_checkpoint_states = init_checkpoint_states
