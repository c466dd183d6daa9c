"""OpenRLHF's plugin API (the patch series of patches/) on both installs: the one seam.

Where OpenRLHF carries the series, the names below are OpenRLHF's own, and nothing is replaced.
On OpenRLHF 0.11.2 as released, they are defined here, and `install()` makes the released trainer
read them; `SUBSTITUTED` lists every OpenRLHF symbol it replaces. Either way `plugin.register` is
the single registration path.
"""

import argparse
import functools
import importlib.util
import os
import types

SUPPORTED_OPENRLHF = "0.11.2"
ESTIMATOR_FLAG = "--algo.advantage.estimator"
SETUP_HOOK = "openrlhf_3spo.plugin.compat.load_plugin"  # released OpenRLHF: Ray's worker setup hook

# (module, symbol, what replaces it); on the patched install, none of these
SUBSTITUTED = (
    ("openrlhf.trainer.ppo_utils.experience_maker", "RemoteExperienceMaker.compute_advantages_and_returns",
     "wrapped: a registered estimator shapes the rewards; OpenRLHF's own code runs for the rest"),
    ("openrlhf.trainer.ppo_trainer", "SamplesGenerator", "the registered samples_generator component"),
    ("openrlhf.trainer.ppo_trainer", "PPOTrainer", "a subclass that calls the registered TrainerCallbacks"),
    ("argparse", "ArgumentParser", "as `import argparse` finds it while `openrlhf-3spo train` runs OpenRLHF's CLI "
     "module: `ParserWithPlugins`, which adds the registered estimators, arguments and checks to OpenRLHF's parser"),
)


@functools.cache
def openrlhf_has_plugin_hooks():
    """True where the installed OpenRLHF carries the patch series (its `openrlhf.utils.plugins`).
    Looks at the files only: importing OpenRLHF here would pull in DeepSpeed and vLLM."""
    spec = importlib.util.find_spec("openrlhf")
    locations = spec.submodule_search_locations if spec is not None else None
    return bool(locations) and any(os.path.isfile(os.path.join(d, "utils", "plugins.py")) for d in locations)


def check_openrlhf_version():
    """The seam replaces OpenRLHF internals that change between releases: one version only."""
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        version = installed("openrlhf")  # the package has no __version__ attribute
    except PackageNotFoundError:
        version = None
    if version != SUPPORTED_OPENRLHF:
        raise RuntimeError(f"openrlhf-3spo supports openrlhf=={SUPPORTED_OPENRLHF}, found {version}")


if openrlhf_has_plugin_hooks():
    from openrlhf.trainer.ppo_utils.advantage_estimators import register_advantage_estimator  # noqa: F401
    from openrlhf.utils.plugins import (  # noqa: F401
        RAY_WORKER_SETUP_HOOK,
        TrainerCallback,
        register_arguments,
        register_trainer_callback,
        register_trainer_component,
    )
else:
    RAY_WORKER_SETUP_HOOK = SETUP_HOOK
    ADVANTAGE_ESTIMATORS = {}  # name -> shape_rewards(experiences, args): one tensor per experience
    PLUGIN_ARGUMENTS = []  # (add_arguments(parser), check_args(args) or None)
    TRAINER_COMPONENTS = {}  # "samples_generator" -> the plugin's SamplesGenerator subclass
    TRAINER_CALLBACKS = []
    _loaded = False

    def register_advantage_estimator(name):
        def decorator(shape_rewards):
            if name in ADVANTAGE_ESTIMATORS:
                raise ValueError(f"advantage estimator {name!r} is already registered")
            ADVANTAGE_ESTIMATORS[name] = shape_rewards
            return shape_rewards

        return decorator

    def register_arguments(add_arguments, check_args=None):
        PLUGIN_ARGUMENTS.append((add_arguments, check_args))

    def register_trainer_component(kind, cls):
        if kind != "samples_generator":  # the one kind the released trainer can take from here
            raise ValueError(f"unknown trainer component {kind!r} on OpenRLHF {SUPPORTED_OPENRLHF}: samples_generator")
        TRAINER_COMPONENTS[kind] = cls

    class TrainerCallback:
        """As the series' TrainerCallback: one instance per run, `callback(trainer)`."""

        def __init__(self, trainer):
            self.trainer = trainer

        def on_train_step_end(self, status, global_step):
            pass

        def on_save_checkpoint(self, global_step):
            pass

        def on_load_checkpoint(self, checkpoint_states):
            pass

    def register_trainer_callback(callback_cls):
        TRAINER_CALLBACKS.append(callback_cls)
        return callback_cls


def load_plugin():
    """What OpenRLHF's `load_plugins` does on the patched install, for this plugin, on the released
    one: register, then install. Ray's worker setup hook there, and the driver's first step. Idempotent."""
    if openrlhf_has_plugin_hooks():
        from openrlhf.utils.plugins import load_plugins

        return load_plugins()
    global _loaded
    if _loaded:
        return
    _loaded = True
    check_openrlhf_version()
    from openrlhf_3spo.plugin import register

    register()
    install()


def install():
    """Makes released OpenRLHF read the registries above: every entry of `SUBSTITUTED` but the
    parser, which `openrlhf-3spo train` puts in place while OpenRLHF's CLI module runs."""
    import openrlhf.trainer.ppo_trainer as ppo_trainer
    from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker

    RemoteExperienceMaker.compute_advantages_and_returns = _with_registered_estimators(
        RemoteExperienceMaker.compute_advantages_and_returns
    )
    ppo_trainer.SamplesGenerator = TRAINER_COMPONENTS.get("samples_generator", ppo_trainer.SamplesGenerator)
    from openrlhf_3spo.plugin.compat_trainer import PPOTrainer

    ppo_trainer.PPOTrainer = PPOTrainer


def _with_registered_estimators(compute_advantages_and_returns):
    """The series' estimator lookup, for the estimators registered here: their shaped rewards, then
    per-token returns as OpenRLHF computes them for its group estimators (the KL penalty per token,
    returns summed back over the action with gamma 1, no batch whitening)."""
    import torch
    from openrlhf.models.utils import compute_reward
    from openrlhf.trainer.ppo_utils.length_penalty import apply_length_penalties

    @functools.wraps(compute_advantages_and_returns)
    def with_registered_estimators(self, experiences):
        args = self.strategy.args
        shape_rewards = ADVANTAGE_ESTIMATORS.get(args.algo.advantage.estimator)
        if shape_rewards is None:
            return compute_advantages_and_returns(self, experiences)
        with torch.no_grad():  # as OpenRLHF's own (a decorator's wrapper would hide whose code this is)
            for experience in experiences:
                experience.rewards = experience.rewards.to(torch.promote_types(experience.rewards.dtype, torch.float32))
            apply_length_penalties(experiences, args)
            for experience, reward in zip(experiences, shape_rewards(experiences, args)):
                reward = compute_reward(
                    reward, self.kl_ctl.value, experience.kl,
                    action_mask=experience.action_mask, reward_clip_range=args.reward.clip_range,
                )
                experience.returns = self.get_cumulative_returns(reward, experience.action_mask, 1.0)
                experience.advantages = experience.returns.clone()
                experience.info["return"] = reward.sum(dim=-1)
                experience.kl = None
        return experiences

    return with_registered_estimators


def argparse_with_plugins():
    """The `argparse` module, but for its ArgumentParser: `ParserWithPlugins`. (argparse's own code
    keeps its own class: it names it as a module global.)"""
    module = types.ModuleType("argparse", argparse.__doc__)
    module.__dict__.update({k: v for k, v in vars(argparse).items() if not k.startswith("__")})
    module.ArgumentParser = ParserWithPlugins
    return module


class ParserWithPlugins(argparse.ArgumentParser):
    """ArgumentParser as OpenRLHF's CLI module finds it on the released install. OpenRLHF's parser
    (the one with `--algo.advantage.estimator`) gets the registered estimators among that flag's
    choices, the registered arguments, the registered checks once parsed, and one-line errors.
    Every other parser behaves as argparse's own."""

    def add_argument(self, *names, **kwargs):
        if ESTIMATOR_FLAG in names:
            kwargs["choices"] = [*kwargs["choices"], *ADVANTAGE_ESTIMATORS]
        return super().add_argument(*names, **kwargs)

    def _is_openrlhfs(self):
        return any(ESTIMATOR_FLAG in action.option_strings for action in self._actions)

    def parse_args(self, args=None, namespace=None):
        if not self._is_openrlhfs():
            return super().parse_args(args, namespace)
        for add_arguments, _ in PLUGIN_ARGUMENTS:
            add_arguments(self)
        parsed = super().parse_args(args, namespace)
        from openrlhf.utils.config import hierarchize

        for _, check_args in PLUGIN_ARGUMENTS:
            if check_args is not None:
                check_args(hierarchize(parsed))
        return parsed

    def error(self, message):
        if not self._is_openrlhfs():
            return super().error(message)
        raise SystemExit(f"openrlhf-3spo: error: {message}")  # one line, not OpenRLHF's whole usage text
