"""The state-score table rides along with OpenRLHF's checkpoints.

Each time OpenRLHF saves a checkpoint (every --ckpt.save_steps), the table is saved beside it, in
<--ckpt.path>/spo3_state/global_step<N>/shard-<i>/, and the newest --ckpt.max_num tables are kept,
as OpenRLHF keeps its own. On resume (--ckpt.load_enable) the table of the step OpenRLHF resumes
from is loaded, so the model and the table always come from the same step.
"""

import functools
import os
import shutil

STATE_DIR = "spo3_state"
STEP_PREFIX = "global_step"


def state_dir(args, global_step):
    return os.path.join(args.ckpt.path, STATE_DIR, f"{STEP_PREFIX}{global_step}")


def _prune(args):
    root = os.path.join(args.ckpt.path, STATE_DIR)
    steps = sorted(int(d[len(STEP_PREFIX):]) for d in os.listdir(root) if d.startswith(STEP_PREFIX) and d[len(STEP_PREFIX):].isdigit())
    for step in steps[: max(len(steps) - args.ckpt.max_num, 0)]:
        shutil.rmtree(state_dir(args, step), ignore_errors=True)


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
            scores.save(state_dir(self.args, global_step))
            _prune(self.args)

    @functools.wraps(init)
    def init_checkpoint_states(self):
        states = init(self)
        scores = connect(self.args)
        step = states["global_step"]
        if scores is not None and step > 0:  # OpenRLHF resumes from a checkpoint (--ckpt.load_enable)
            if not os.path.isdir(state_dir(self.args, step)):
                raise ValueError(f"resuming 3SPO from global step {step}, but {state_dir(self.args, step)} holds no "
                                 "state table: the checkpoint was not written by a 3SPO run")
            scores.load(state_dir(self.args, step))
        return states

    trainer_cls.save_logs_and_checkpoints = save_logs_and_checkpoints
    trainer_cls.init_checkpoint_states = init_checkpoint_states
