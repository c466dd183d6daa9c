"""The OpenRLHF plugin: everything 3SPO adds to OpenRLHF's trainer, registered in one place.

`register` is the plugin's `openrlhf.plugins` entry point. Where OpenRLHF carries the patch series
of patches/, OpenRLHF calls it in the driver and in every Ray worker, and nothing is replaced. On
OpenRLHF 0.11.2 as released, `compat` provides the same API (`compat.SUBSTITUTED` lists what it
replaces), and `openrlhf-3spo train` loads the plugin through it.

    advantages.py         the step modes' estimators: step samples' rewards -> advantages
    samples_generator.py  step samples -> OpenRLHF Experiences; starts and advances the state table
    callbacks.py          spo3/* metrics, the state table with checkpoints, the --spo3.* checks
    scores.py             the run's state-score actors, as the OpenRLHF side finds them
    train.py, cpu.py      the `openrlhf-3spo train` CLI, and its --cpu mode
"""

import os

from openrlhf_3spo.plugin import cpu as cpu_mode

# the --advantage_estimator names the plugin adds, and the agent mode each trains
STEP_ESTIMATORS = {"3spo": "3spo", "step_grpo": "grpo", "gigpo": "gigpo"}


def register():
    """Registers the step modes' estimators, the --spo3.* flags and their checks, the samples
    generator and the trainer callback. OpenRLHF (or `compat.load_plugin`) calls it once per process."""
    if os.environ.get(cpu_mode.CPU_MODE_VAR) == "1":
        cpu_mode.apply()
    from openrlhf_3spo.plugin import advantages
    from openrlhf_3spo.plugin.callbacks import SPO3Callback, check_args
    from openrlhf_3spo.plugin.compat import (
        register_advantage_estimator,
        register_arguments,
        register_trainer_callback,
        register_trainer_component,
    )
    from openrlhf_3spo.plugin.samples_generator import StepSamplesGenerator
    from openrlhf_3spo.settings import add_flags

    register_advantage_estimator("3spo")(advantages.shape_3spo)
    register_advantage_estimator("step_grpo")(advantages.shape_step_grpo)
    register_advantage_estimator("gigpo")(advantages.shape_gigpo)
    register_arguments(add_flags, check_args)
    register_trainer_component("samples_generator", StepSamplesGenerator)
    register_trainer_callback(SPO3Callback)
