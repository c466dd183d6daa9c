"""What 3SPO adds to OpenRLHF's trainer loop (`SPO3Callback`), and the check of its settings.

Each time OpenRLHF saves a checkpoint (every --ckpt.save_steps), the table is saved beside it, in
<--ckpt.path>/spo3_state/global_step<N>/shard-<i>/, and the newest --ckpt.max_num tables are kept,
as OpenRLHF keeps its own. On resume (--ckpt.load_enable) the table of the step OpenRLHF resumes
from is loaded, so the model and the table always come from the same step.
"""

import os
import shutil

from openrlhf_3spo.agents import step_estimator
from openrlhf_3spo.plugin import cpu as cpu_mode
from openrlhf_3spo.plugin.compat import TrainerCallback
from openrlhf_3spo.plugin.scores import state_scores_for

STATE_DIR = "spo3_state"
STEP_PREFIX = "global_step"


def state_dir(args, global_step):
    return os.path.join(args.ckpt.path, STATE_DIR, f"{STEP_PREFIX}{global_step}")


def _prune(args):
    root = os.path.join(args.ckpt.path, STATE_DIR)
    steps = sorted(int(d[len(STEP_PREFIX):]) for d in os.listdir(root) if d.startswith(STEP_PREFIX) and d[len(STEP_PREFIX):].isdigit())
    for step in steps[: max(len(steps) - args.ckpt.max_num, 0)]:
        shutil.rmtree(state_dir(args, step), ignore_errors=True)


class SPO3Callback(TrainerCallback):
    def on_train_step_end(self, status, global_step):
        """The step modes' rollout statistics and 3SPO's table, into the status dict that OpenRLHF
        logs to wandb and tensorboard."""
        args = self.trainer.args
        if step_estimator(args.train.agent_func_path) is not None:  # the step modes' samples generator
            status.update(self.trainer.samples_generator.pop_stats())
        scores = state_scores_for(args)
        if scores is not None:
            table = scores.stats()
            status.update({f"spo3/{k}": v for k, v in table.items() if isinstance(v, (int, float))})

    def on_save_checkpoint(self, global_step):
        """After OpenRLHF saved its checkpoint `global_step<N>`."""
        scores = state_scores_for(self.trainer.args)
        if scores is not None:
            scores.save(state_dir(self.trainer.args, global_step))
            _prune(self.trainer.args)

    def on_load_checkpoint(self, checkpoint_states):
        """With the states OpenRLHF resumes from: global step 0 is a new run, whose table starts empty."""
        args, step = self.trainer.args, checkpoint_states["global_step"]
        scores = state_scores_for(args)
        if scores is None or step == 0:
            return
        if not os.path.isdir(state_dir(args, step)):
            raise ValueError(f"resuming 3SPO from global step {step}, but {state_dir(args, step)} holds no "
                             "state table: the checkpoint was not written by a 3SPO run")
        scores.load(state_dir(args, step))


def check_args(args):
    """OpenRLHF's parsed (hierarchical) args: the first inconsistent setting stops the run, in one line."""
    from openrlhf_3spo.plugin.train import problems

    found = problems(args, cpu=os.environ.get(cpu_mode.CPU_MODE_VAR) == "1")
    if found:
        raise SystemExit(f"openrlhf-3spo: error: {found[0]}")
