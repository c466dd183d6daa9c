"""What 3SPO adds to OpenRLHF's trainer: its metrics in each step's logged status, and the
state-score table with each checkpoint. Called by `plugin.SPO3Callback` where OpenRLHF has the
patch series, and by the wraps `register.py` installs on OpenRLHF 0.11.2 as released.

Each time OpenRLHF saves a checkpoint (every --ckpt.save_steps), the table is saved beside it, in
<--ckpt.path>/spo3_state/global_step<N>/shard-<i>/, and the newest --ckpt.max_num tables are kept,
as OpenRLHF keeps its own. On resume (--ckpt.load_enable) the table of the step OpenRLHF resumes
from is loaded, so the model and the table always come from the same step.
"""

import os
import shutil

from openrlhf_3spo.agents import step_estimator
from openrlhf_3spo.openrlhf.scores import state_scores_for

STATE_DIR = "spo3_state"
STEP_PREFIX = "global_step"


def state_dir(args, global_step):
    return os.path.join(args.ckpt.path, STATE_DIR, f"{STEP_PREFIX}{global_step}")


def _prune(args):
    root = os.path.join(args.ckpt.path, STATE_DIR)
    steps = sorted(int(d[len(STEP_PREFIX):]) for d in os.listdir(root) if d.startswith(STEP_PREFIX) and d[len(STEP_PREFIX):].isdigit())
    for step in steps[: max(len(steps) - args.ckpt.max_num, 0)]:
        shutil.rmtree(state_dir(args, step), ignore_errors=True)


def add_step_metrics(trainer, status):
    """The step modes' rollout statistics and 3SPO's table, into the status dict that OpenRLHF logs
    to wandb and tensorboard."""
    if step_estimator(trainer.args.train.agent_func_path) is not None:  # the step modes' samples generator
        status.update(trainer.samples_generator.pop_stats())
    scores = state_scores_for(trainer.args)
    if scores is None:
        return
    table = scores.stats()
    status.update({f"spo3/{k}": v for k, v in table.items() if isinstance(v, (int, float))})
    status.update({f"spo3/states_with_n_{n}": c for n, c in enumerate(table["n_histogram"])})


def save_table(trainer, global_step):
    """After OpenRLHF saved its checkpoint `global_step<N>`."""
    scores = state_scores_for(trainer.args)
    if scores is not None and global_step % trainer.args.ckpt.save_steps == 0:
        scores.save(state_dir(trainer.args, global_step))
        _prune(trainer.args)


def load_table(trainer, checkpoint_states):
    """With the states OpenRLHF resumes from: global step 0 is a new run, whose table starts empty."""
    scores = state_scores_for(trainer.args)
    step = checkpoint_states["global_step"]
    if scores is None or step == 0:
        return
    if not os.path.isdir(state_dir(trainer.args, step)):
        raise ValueError(f"resuming 3SPO from global step {step}, but {state_dir(trainer.args, step)} holds no "
                         "state table: the checkpoint was not written by a 3SPO run")
    scores.load(state_dir(trainer.args, step))
