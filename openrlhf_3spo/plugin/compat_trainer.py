"""Released OpenRLHF's PPO trainer, calling the registered TrainerCallbacks where the patch series
calls them (`compat.install` puts it in `openrlhf.trainer.ppo_trainer`, where OpenRLHF's `train`
looks it up). A module of its own: it imports the trainer, and Ray finds the class by its name."""

import ray
from openrlhf.trainer import ppo_trainer

from openrlhf_3spo.plugin.compat import TRAINER_CALLBACKS

# `ppo_trainer.PPOTrainer` is Ray's actor class; `__ray_actor_class__` is the class it was made from
_RELEASED = ppo_trainer.PPOTrainer.__ray_actor_class__


class PPOTrainerWithCallbacks(_RELEASED):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.callbacks = [callback_cls(self) for callback_cls in TRAINER_CALLBACKS]

    def train_step(self, rollout_samples, global_step):
        status, next_step = super().train_step(rollout_samples, global_step)
        for callback in self.callbacks:
            callback.on_train_step_end(status, next_step)
        return status, next_step

    def save_logs_and_checkpoints(self, global_step, logs_dict=None, client_states=None):
        super().save_logs_and_checkpoints(global_step, logs_dict, client_states)
        if global_step % self.args.ckpt.save_steps == 0:
            for callback in self.callbacks:
                callback.on_save_checkpoint(global_step)

    def init_checkpoint_states(self):
        states = super().init_checkpoint_states()
        for callback in self.callbacks:
            callback.on_load_checkpoint(states)
        return states


PPOTrainer = ray.remote(PPOTrainerWithCallbacks)
