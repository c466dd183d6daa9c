"""The records at the rollout boundary: what the plugin's samples generator asks of an agent
executor for one task (`TaskRequest`, built once where the prompts are sent to vLLM and sent as the
task's label, which OpenRLHF passes through untouched), and what every step-mode executor returns
(`TaskResult`, one `StepSample` per step sample), serialised once as OpenRLHF's rollout output."""

from dataclasses import dataclass, field

from openrlhf_3spo.settings import Settings

FIELDS = ("label", "trajectories", "version", "settings", "eval")  # the label's keys, all of them


@dataclass(frozen=True)
class TaskRequest:
    label: object  # the dataset label: which task
    trajectories: int = 1  # the task's budget: OpenRLHF's --rollout.n_samples_per_prompt
    version: int | None = None  # the state table's snapshot version the rollout reads (3SPO)
    settings: Settings = field(default_factory=Settings)  # the run's
    eval: bool = False  # one plain episode, nothing recorded

    def to_label(self):
        return {"label": self.label, "trajectories": self.trajectories, "version": self.version,
                "settings": self.settings.to_dict(), "eval": self.eval}

    @classmethod
    def from_label(cls, label):
        """From `to_label`'s dict, every field present; a plain dataset label (a run without the
        plugin's samples generator) asks for one trajectory with the default settings. A request
        already read (the agent functions read it once per task, then hand it on) is itself."""
        if isinstance(label, TaskRequest):
            return label
        if not (isinstance(label, dict) and "label" in label):
            return cls(label)
        missing = set(FIELDS) - set(label)
        if missing:
            raise ValueError(f"task request without {', '.join(sorted(missing))}: {str(label)[:200]!r}")
        if isinstance(label["trajectories"], bool) or not isinstance(label["trajectories"], int) or label["trajectories"] < 1:
            raise ValueError(f"trajectory budget must be a whole number >= 1, got {label['trajectories']!r}")
        return cls(label["label"], label["trajectories"], label["version"], Settings(**label["settings"]),
                   bool(label["eval"]))


@dataclass
class StepSample:
    """One step sample in every step mode: the rendered context at s_t, one action, its reward. No
    field has a default; those of one mode only are None in the other."""

    context_ids: list
    action_ids: list
    logprobs: list | None
    action: str  # what the env was sent ("" for an unparsable or cut-off output)
    cut_off: bool  # the generation reached max_tokens
    reward: float  # what the estimator normalises: 3SPO's step reward (eq. 2), GRPO's trajectory return
    env_reward: float  # the env's own reward for this step (GiGPO's step reward)
    success: bool
    invalid: bool
    novel: bool  # the step changed the state
    group_id: str  # 3SPO: the candidates at one state; GRPO and GiGPO: the task's B trajectories
    state_key: str  # s_t (GiGPO's anchor)
    next_state_key: str
    step: int  # its index along its path
    continued: bool  # its path went on along this action
    n: int  # samples drawn at s_t
    trained: bool  # 3SPO: False for n = 1 steps (and, with tried_pairs="filter", groups left with one member)
    trajectory_id: str | None  # GRPO and GiGPO: its trajectory; 3SPO: None (its groups are per state)
    novelty_weight: float | None  # 3SPO's eq. 2 terms; None under GRPO
    score: float | None  # S(s_t), as the progress term takes it
    score_next: float | None  # S(s_t+1), likewise


@dataclass
class TaskResult:
    """What every step-mode executor returns for one task, as OpenRLHF's rollout actor passes it on
    to the samples generator (`to_output`). No field has a default: each executor states each."""

    prompt: str
    label: object  # the dataset label
    task: str
    step_samples: list  # of StepSample
    trajectories: list  # the finished trajectories: {"keys": state keys to record, "won": bool, ...}
    truncated_trajectories: int
    written_off: bool  # the paper's write-off rule would truncate this task at its start state
    rollout_stats: dict  # where the env steps went: main_steps, fork_steps, continuation_steps, backtrack_depths

    def to_output(self):
        # shallow: dataclasses.asdict would copy every token list
        return {**vars(self), "step_samples": [dict(vars(s)) for s in self.step_samples]}
