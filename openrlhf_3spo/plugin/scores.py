"""The run's state-score actors, as the OpenRLHF side sees them: started by the samples generator in
the trainer's process, found by name everywhere else (trainer callback, rollouts)."""

import functools
import os
import uuid
from datetime import datetime


def uses_3spo(args):
    return args.algo.advantage.estimator == "3spo"


def live_snapshot_dir(ckpt_path):
    """Where this run's state actors snapshot every version, for Ray to restart a crashed one from:
    a folder of its own, so a new run never inherits an old run's statistics (a resumed run gets
    the checkpointed table, through --ckpt.load_enable)."""
    run = f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    return os.path.join(ckpt_path, "spo3_live", run)


def start_state_scores(args):
    """Starts the run's StateScores (or finds them, if started already); None without 3SPO."""
    if not uses_3spo(args):
        return None
    from openrlhf_3spo.state.client import StateScores

    spo3 = args.spo3
    return StateScores.create(
        spo3.state_actor,
        num_shards=spo3.score_shards,
        snapshot_dir=live_snapshot_dir(args.ckpt.path),
        alpha=spo3.alpha,
        xi=spo3.xi,
        zeta=spo3.zeta,
    )


@functools.cache
def _connect(name, shards):
    from openrlhf_3spo.state.client import StateScores

    return StateScores.connect(name, shards)


def state_scores_for(args):
    """The run's StateScores, started by the samples generator; None without 3SPO."""
    if not uses_3spo(args):
        return None
    return _connect(args.spo3.state_actor, args.spo3.score_shards)
