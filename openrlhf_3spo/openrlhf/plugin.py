"""The plugin where OpenRLHF carries the patch series of patches/: OpenRLHF calls `register` through
its `openrlhf.plugins` entry point, in the driver before it builds its parser and in every Ray
worker, and 3SPO runs through OpenRLHF's own registries and hooks. Nothing in OpenRLHF is replaced.
(On OpenRLHF 0.11.2 as released, `register.py` is used instead.)
"""

import os

from openrlhf.trainer.ppo_utils.advantage_estimators import register_advantage_estimator
from openrlhf.utils.plugins import (
    TrainerCallback,
    register_arguments,
    register_trainer_callback,
    register_trainer_component,
)

from openrlhf_3spo.openrlhf import cpu as cpu_mode
from openrlhf_3spo.openrlhf import trainer_hooks


class SPO3Callback(TrainerCallback):
    def on_train_step_end(self, status, global_step):
        trainer_hooks.add_step_metrics(self.trainer, status)

    def on_save_checkpoint(self, global_step):
        trainer_hooks.save_table(self.trainer, global_step)

    def on_load_checkpoint(self, checkpoint_states):
        trainer_hooks.load_table(self.trainer, checkpoint_states)


def check_args(args):
    """OpenRLHF's parsed args: the first inconsistent setting stops the run, in one line."""
    from openrlhf_3spo.openrlhf.train import problems

    found = problems(args, cpu=os.environ.get(cpu_mode.CPU_MODE_VAR) == "1")
    if found:
        raise SystemExit(f"openrlhf-3spo: error: {found[0]}")


def register():
    """OpenRLHF's `openrlhf.plugins` entry point; OpenRLHF calls it once per process."""
    if os.environ.get(cpu_mode.CPU_MODE_VAR) == "1":
        cpu_mode.apply()
    from openrlhf_3spo.openrlhf import PLUGIN_ESTIMATORS
    from openrlhf_3spo.openrlhf.experience_maker import SPO3ExperienceMaker, step_rewards
    from openrlhf_3spo.openrlhf.samples_generator import SPO3SamplesGenerator
    from openrlhf_3spo.settings import add_flags

    for name in PLUGIN_ESTIMATORS:
        register_advantage_estimator(name)(step_rewards)
    register_arguments(add_flags, check_args)
    register_trainer_component("samples_generator", SPO3SamplesGenerator)
    register_trainer_component("experience_maker", SPO3ExperienceMaker)
    register_trainer_callback(SPO3Callback)
