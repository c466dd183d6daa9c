"""SamplesGenerator for the step-sample agent modes (3SPO, step-wise GRPO, GiGPO): one Experience
per trained step sample.

Their executors return a whole task per call: its step samples and finished trajectories. Each
trained step becomes a single-turn response (context + action tokens) that OpenRLHF's own code turns
into an Experience, so masks, truncation and log-probs are handled as for any other sample; its
group id (and, for GRPO, trajectory id), score, n and reward parts ride in `info`. Under 3SPO, the
finished trajectories are staged in the state-score table right away; the table's next version,
in which they count, starts once the batch is generated.
"""

import copy
import hashlib
import math
from collections import Counter

import torch
from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
from openrlhf.trainer.ray.vllm_engine import batch_vllm_engine_call

from openrlhf_3spo.agents import agent_executor_class, step_estimator
from openrlhf_3spo.plugin.advantages import ENV_REWARD_KEY, GROUP_KEY, PAD_KEY, STATE_KEY, STEP_KEY, TRAJECTORY_KEY
from openrlhf_3spo.plugin.scores import start_state_scores
from openrlhf_3spo.rollout.request import TaskRequest
from openrlhf_3spo.settings import Settings

STEP_INFO = ("score", "score_next", "n", "novel", "success", "invalid", "novelty_weight", "env_reward")


def group_number(group_id: str) -> int:
    """A 63-bit integer for a group id string, stable across processes."""
    return int.from_bytes(hashlib.blake2b(group_id.encode(), digest_size=8).digest(), "little") >> 1


ANCHOR_BINS = ((1, "1"), (2, "2"), (4, "3-4"), (8, "5-8"), (16, "9-16"))  # (largest size, label); then 17+


def _size_bin(size):
    return next((label for high, label in ANCHOR_BINS if size <= high), "17+")


def data_parallel_ranks(args):
    """The actor's data-parallel ranks, as OpenRLHF counts them."""
    gpus = args.actor.num_nodes * args.actor.num_gpus_per_node
    return max(gpus // args.ds.ring_attn_size // args.ds.tensor_parallel_size, 1)


def padded_size(n, ranks, rollout_micro_batch, train_micro_batch):
    """The smallest multiple of lcm(ranks x rollout micro-batch, ranks x train micro-batch) >= n.

    A step batch of that size splits evenly under OpenRLHF's chunking (ceil(N / ranks) per rank):
    every rank gets the same number of forward micro-batches and of training micro-batches (none
    dropped by the data loader's drop_last), so no rank waits on another's collective."""
    unit = math.lcm(ranks * rollout_micro_batch, ranks * train_micro_batch)
    return -(-n // unit) * unit


def pad_for_equal_work(experiences, args):
    """Step samples vary in number per batch; pads them to `padded_size` with zero-weight copies:
    no action token (empty action mask: no loss, no token in the loss normaliser, which counts
    only non-empty sequences), reward 0, and a group of their own (advantage 0). Real groups are
    never split or trimmed, so none is weighted differently because of the split."""
    if not experiences or args.train.dynamic_batch_enable:  # OpenRLHF's dynamic batching balances itself
        return experiences
    size = padded_size(
        len(experiences), data_parallel_ranks(args), args.rollout.micro_batch_size, args.train.micro_batch_size
    )
    pads = []
    for i in range(size - len(experiences)):
        pad = copy.deepcopy(experiences[i % len(experiences)])
        pad.action_mask = torch.zeros_like(pad.action_mask)
        pad.rewards = torch.zeros_like(pad.rewards)
        pad.info = dict(pad.info, reward=torch.zeros(1), **{PAD_KEY: torch.ones(1)})
        for id_key in (GROUP_KEY, TRAJECTORY_KEY, STATE_KEY):  # alone in its groups: advantage 0
            if id_key in pad.info:
                pad.info[id_key] = torch.tensor([-1 - i])
        if ENV_REWARD_KEY in pad.info:
            pad.info[ENV_REWARD_KEY] = torch.zeros(1)
        pads.append(pad)
    return experiences + pads


class StepSamplesGenerator(SamplesGenerator):
    """OpenRLHF's samples generator, which also runs the step-sample agent modes and, under 3SPO,
    starts the run's state-score actors (the trainer's process holds them for the run)."""

    _evaluating = False  # set while generate_eval_samples runs

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.state_scores = start_state_scores(self.args)
        self.spo3_stats = {}

    def _yields_steps(self):
        """The agent function yields step samples (3SPO and step-wise GRPO modes) in training; in
        evaluation each call is one plain episode whose reward is task success."""
        return step_estimator(self.args.train.agent_func_path) is not None and not self._evaluating

    def generate_eval_samples(self, **generate_kwargs):
        self._evaluating = True
        try:
            return super().generate_eval_samples(**generate_kwargs)
        finally:
            self._evaluating = False

    def generate_samples(self, **generate_kwargs):
        """Step modes train on all step samples of one batch of prompts, so that no group is split
        across training steps (OpenRLHF's chunking counts n_samples_per_prompt per prompt)."""
        if not self._yields_steps():
            return super().generate_samples(**generate_kwargs)
        if getattr(self, "_dataloader_iter", None) is None:
            self._dataloader_iter = iter(self.prompts_dataloader)
        if self.args.vllm.enable_sleep:
            batch_vllm_engine_call(self.vllm_engines, "wake_up")
        experiences, consumed, exhausted = self._generate_vllm(
            self._dataloader_iter, self.args.rollout.batch_size, dynamic_filtering=False, **generate_kwargs
        )
        if self.state_scores is not None:  # the batch's trajectories count from the next version on
            self.state_scores.advance()
        padded = pad_for_equal_work(experiences, self.args)
        self.spo3_stats["padded_samples"] = len(padded) - len(experiences)
        experiences = padded
        if self.args.vllm.enable_sleep:
            batch_vllm_engine_call(self.vllm_engines, "sleep")
        if exhausted:
            self._dataloader_iter = None
        return experiences, None, consumed, exhausted

    def _dispatch_prompts_to_vllm(self, prompts, labels, *, images=None, **generate_kwargs):
        agent = self.args.train.agent_func_path
        if agent and getattr(agent_executor_class(agent), "reads_settings", False):
            # each task's request: the run's settings, and in a step mode's training its budget
            request = dict(settings=Settings.from_namespace(self.args.spo3), eval=self._evaluating and bool(step_estimator(agent)))
            if self._yields_steps():  # one executor call per task: n_samples_per_prompt trajectories
                version = self.state_scores.current_version() if self.state_scores is not None else None
                request.update(trajectories=self.args.rollout.n_samples_per_prompt, version=version)
                generate_kwargs = dict(generate_kwargs, n_samples_per_prompt=1)
            labels = [TaskRequest(label, **request).to_label() for label in labels]
        return super()._dispatch_prompts_to_vllm(prompts, labels, images=images, **generate_kwargs)

    def _generate_vllm(self, *args, **kwargs):
        experiences, consumed, exhausted = super()._generate_vllm(*args, **kwargs)
        if self._yields_steps():  # one list of step Experiences per task
            experiences = [e for task in experiences for e in task]
        return experiences, consumed, exhausted

    def _process_response_into_experience(self, response, **generate_kwargs):
        if "step_samples" not in response:
            return super()._process_response_into_experience(response, **generate_kwargs)
        trajectories = response["trajectories"]
        if self.state_scores is not None and trajectories:
            self.state_scores.record([t["keys"] for t in trajectories], [t["won"] for t in trajectories])
        experiences = []
        for step in response["step_samples"]:
            if not step["trained"]:
                continue
            context, action = step["context_ids"], step["action_ids"]
            single_turn = {
                "prompt": response["prompt"],
                "label": response["label"],
                "observation_tokens": context + action,
                "action_ranges": [(len(context), len(context) + len(action))],
                "rollout_log_probs": [0.0] * len(context) + step["logprobs"] if step["logprobs"] is not None else None,
                "reward": step["reward"],
                "scores": step["reward"],
                "truncated": step["cut_off"],
                "extra_logs": {name: float(step[name]) for name in STEP_INFO if step[name] is not None},
            }
            experience = super()._process_response_into_experience(single_turn, **generate_kwargs)
            experience.info[GROUP_KEY] = torch.tensor([group_number(step["group_id"])])
            experience.info[PAD_KEY] = torch.zeros(1)  # every sample carries each info key (OpenRLHF concatenates them)
            if step["trajectory_id"] is not None:  # GRPO and GiGPO modes
                experience.info[TRAJECTORY_KEY] = torch.tensor([group_number(step["trajectory_id"])])
                experience.info[STATE_KEY] = torch.tensor([group_number(step["state_key"])])
                experience.info[STEP_KEY] = torch.tensor([step["step"]])
            experiences.append(experience)
        self._count(response)
        return experiences

    def _count(self, response):
        """Per-batch rollout statistics for the logs (reset by `pop_stats`)."""
        steps = response["step_samples"]
        stats = self.spo3_stats
        stats["tasks"] = stats.get("tasks", 0) + 1
        stats["written_off_tasks"] = stats.get("written_off_tasks", 0) + response["written_off"]
        stats["steps"] = stats.get("steps", 0) + len(steps)
        stats["trained_steps"] = stats.get("trained_steps", 0) + sum(s["trained"] for s in steps)
        stats["trajectories"] = stats.get("trajectories", 0) + len(response["trajectories"]) + response["truncated_trajectories"]
        stats["truncated_trajectories"] = stats.get("truncated_trajectories", 0) + response["truncated_trajectories"]
        stats["recorded_trajectories"] = stats.get("recorded_trajectories", 0) + len(response["trajectories"])
        stats["won_trajectories"] = stats.get("won_trajectories", 0) + sum(t["won"] for t in response["trajectories"])
        for s in steps:
            stats[f"n_{s['n']}"] = stats.get(f"n_{s['n']}", 0) + 1
        if steps and steps[0]["trajectory_id"] is not None:  # GiGPO's anchor-state groups (the GRPO mode has them too)
            for size in Counter(s["state_key"] for s in steps).values():
                label = f"anchor_group_{_size_bin(size)}"
                stats[label] = stats.get(label, 0) + size

    def pop_stats(self):
        """Metrics for OpenRLHF's status dict, over the tasks since the last call."""
        stats, self.spo3_stats = self.spo3_stats, {}
        if not stats.get("tasks"):
            return {}
        metrics = {
            "spo3/trained_step_fraction": stats["trained_steps"] / max(stats["steps"], 1),
            "spo3/truncation_rate": stats["truncated_trajectories"] / max(stats["trajectories"], 1),
            "spo3/success_rate": stats["won_trajectories"] / max(stats["trajectories"], 1),
            "spo3/steps_per_task": stats["steps"] / stats["tasks"],
            "spo3/recorded_trajectories": stats["recorded_trajectories"],  # what the table's t grows by
            "spo3/trained_samples": stats["trained_steps"],
            "spo3/padded_samples": stats.get("padded_samples", 0),  # zero-weight samples for equal work per rank
            # tasks the paper's write-off rule would truncate at their start state
            "spo3/written_off_tasks": stats["written_off_tasks"],
        }
        metrics.update({f"spo3/steps_with_{k}": v / max(stats["steps"], 1) for k, v in stats.items() if k.startswith("n_")})
        # the fraction of steps whose anchor-state group has this many members (size 1: no step advantage)
        metrics.update({f"spo3/steps_in_{k}": v / max(stats["steps"], 1) for k, v in stats.items() if k.startswith("anchor_group_")})
        return metrics
