"""What the plugin's samples generator asks of an agent executor for one task, built once where the
prompts are sent to vLLM and sent as the task's label (OpenRLHF passes labels through untouched)."""

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
        plugin's samples generator) asks for one trajectory with the default settings."""
        if not (isinstance(label, dict) and "label" in label):
            return cls(label)
        missing = set(FIELDS) - set(label)
        if missing:
            raise ValueError(f"task request without {', '.join(sorted(missing))}: {str(label)[:200]!r}")
        if isinstance(label["trajectories"], bool) or not isinstance(label["trajectories"], int) or label["trajectories"] < 1:
            raise ValueError(f"trajectory budget must be a whole number >= 1, got {label['trajectories']!r}")
        return cls(label["label"], label["trajectories"], label["version"], Settings(**label["settings"]).checked(),
                   bool(label["eval"]))


@dataclass
class TaskResult:
    """What every step-mode executor returns for one task, as OpenRLHF's rollout actor passes it on
    to the samples generator (`to_output`). No field has a default: each executor states each."""

    prompt: str
    label: object  # the dataset label
    task: str
    step_samples: list  # one record per step sample (the mode's StepSample / TrajectoryStep)
    trajectories: list  # the finished trajectories: {"keys": state keys to record, "won": bool, ...}
    truncated_trajectories: int
    written_off: bool  # the paper's write-off rule would truncate this task at its start state
    rollout_stats: dict  # where the env steps went: main_steps, fork_steps, continuation_steps, backtrack_depths

    def to_output(self):
        # shallow: dataclasses.asdict would copy every token list
        return {**vars(self), "step_samples": [dict(vars(s)) for s in self.step_samples]}
