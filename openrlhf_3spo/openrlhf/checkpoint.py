"""The state-score table rides along with OpenRLHF's checkpoints.

Each time OpenRLHF saves a checkpoint (every --ckpt.save_steps), the table is saved to
<--ckpt.path>/spo3_state/shard-<i>/; on resume (--ckpt.load_enable) it is loaded from there. The
folder holds the latest table, as OpenRLHF resumes from its latest checkpoint.
"""

import functools
import os

STATE_DIR = "spo3_state"


def state_dir(args):
    return os.path.join(args.ckpt.path, STATE_DIR)


def install_checkpoint_hooks(trainer_cls, connect):
    """Wraps a BasePPOTrainer class's checkpoint save and resume. `connect(args)` returns the run's
    StateScores, or None when the run does not use 3SPO."""
    save = trainer_cls.save_logs_and_checkpoints
    init = trainer_cls.init_checkpoint_states

    @functools.wraps(save)
    def save_logs_and_checkpoints(self, global_step, logs_dict=None, client_states=None):
        save(self, global_step, logs_dict, client_states)
        scores = connect(self.args)
        if scores is not None and global_step % self.args.ckpt.save_steps == 0:
            scores.save(state_dir(self.args))

    @functools.wraps(init)
    def init_checkpoint_states(self):
        states = init(self)
        scores = connect(self.args)
        if scores is not None and self.args.ckpt.load_enable and os.path.isdir(state_dir(self.args)):
            scores.load(state_dir(self.args))
        return states

    trainer_cls.save_logs_and_checkpoints = save_logs_and_checkpoints
    trainer_cls.init_checkpoint_states = init_checkpoint_states
