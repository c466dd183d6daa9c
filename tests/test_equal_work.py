"""Step batches vary in size; padded with zero-weight samples, they split evenly over the actor
ranks under OpenRLHF's own chunking, and the padding changes no real sample's advantage."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from openrlhf.trainer.ppo_utils.experience import Experience
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
from openrlhf.trainer.ray.launcher import RayActorGroup

from openrlhf_3spo.plugin import compat
from openrlhf_3spo.plugin.advantages import GROUP_KEY, PAD_KEY
from openrlhf_3spo.plugin.samples_generator import pad_for_equal_work, padded_size


def openrlhf_chunks(total, ranks, monkeypatch):
    """The chunk sizes OpenRLHF's RayActorGroup.async_run_method_batch gives each rank."""
    sizes = []

    class Handle:
        class execute_batch:
            @staticmethod
            def remote(method, chunk, start, end):
                sizes.append(end - start)

    group = RayActorGroup.__new__(RayActorGroup)
    group._actor_handlers, group.duplicate_actors = [Handle() for _ in range(ranks)], 1
    monkeypatch.setattr("ray.put", lambda data: data)
    group.async_run_method_batch("append", experience=list(range(total)))
    return sizes


@pytest.mark.parametrize("ranks", [1, 2, 4, 8])
@pytest.mark.parametrize("rollout_micro, train_micro", [(1, 1), (2, 4), (4, 2), (8, 8), (3, 4)])
def test_every_rank_gets_the_same_micro_batches(ranks, rollout_micro, train_micro, monkeypatch):
    rng = np.random.default_rng(ranks * 100 + rollout_micro * 10 + train_micro)
    for steps in [*rng.integers(1, 400, size=6), 1, 97]:
        size = padded_size(int(steps), ranks, rollout_micro, train_micro)
        assert steps <= size < steps + np.lcm(ranks * rollout_micro, ranks * train_micro)
        # forward passes: the rollout micro-batches, chunked over the ranks
        forward = openrlhf_chunks(size // rollout_micro, ranks, monkeypatch)
        assert len(set(forward)) == 1 and len(forward) == ranks
        # training: the samples, chunked over the ranks, then drop_last micro-batches of train_micro
        samples = openrlhf_chunks(size, ranks, monkeypatch)
        assert len(set(samples)) == 1 and samples[0] % train_micro == 0  # nothing dropped


def test_unpadded_step_batches_give_ranks_unequal_work(monkeypatch):
    # 13 step samples over 4 ranks: OpenRLHF's ceil chunking gives 4, 4, 4 and 1 samples
    assert openrlhf_chunks(13, 4, monkeypatch) == [4, 4, 4, 1]
    assert openrlhf_chunks(padded_size(13, 4, 1, 2), 4, monkeypatch) == [4, 4, 4, 4]


def _step(reward, group, mask=(1, 1, 0)):
    return Experience(
        sequences=torch.tensor([[5, 6, 7, 8]]), action_mask=torch.tensor([mask], dtype=torch.bool),
        rewards=torch.tensor([reward]), kl=torch.zeros(1, 3), info={GROUP_KEY: torch.tensor([group]), PAD_KEY: torch.zeros(1)},
    )


def test_pads_carry_no_weight_and_leave_real_advantages_unchanged():
    compat.load_plugin()  # the 3spo estimator, as a run registers it
    real = [_step(1.0, 7), _step(0.0, 7), _step(0.5, 9), _step(0.0, 9), _step(2.0, 9)]
    args = SimpleNamespace(
        actor=SimpleNamespace(num_nodes=1, num_gpus_per_node=4), ds=SimpleNamespace(ring_attn_size=1, tensor_parallel_size=1),
        rollout=SimpleNamespace(micro_batch_size=2), train=SimpleNamespace(micro_batch_size=1, dynamic_batch_enable=False),
        algo=SimpleNamespace(advantage=SimpleNamespace(estimator="3spo")), reward=SimpleNamespace(clip_range=(-10, 10), overlong_buffer_len=None, stop_properly_penalty_coef=None),
        spo3=SimpleNamespace(adv_norm="mean_std", state_actor="x", score_shards=1),
    )
    padded = pad_for_equal_work(copy.deepcopy(real), args)
    assert len(padded) == 8  # lcm(4 x 2, 4 x 1) = 8
    pads = padded[5:]
    assert all(not p.action_mask.any() and p.rewards.item() == 0 and p.info[PAD_KEY].item() == 1 for p in pads)
    assert len({p.info[GROUP_KEY].item() for p in pads} | {7, 9}) == 5  # each pad alone in its group

    def advantages(batch):
        maker = RemoteExperienceMaker.__new__(RemoteExperienceMaker)
        maker.strategy, maker.args, maker.kl_ctl = SimpleNamespace(args=args), args, SimpleNamespace(value=0.0)
        maker.compute_advantages_and_returns(batch)
        return [e.info["spo3_advantage"].item() for e in batch]

    with_pads = advantages(padded)
    assert with_pads[:5] == advantages(copy.deepcopy(real)) and with_pads[5:] == [0.0] * 3
    # a batch that already splits evenly is left as it is
    assert len(pad_for_equal_work(copy.deepcopy(real[:4] * 2), args)) == 8
