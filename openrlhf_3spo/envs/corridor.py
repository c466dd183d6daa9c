"""A small deterministic TextEnv with known optimal actions: a combination-lock corridor.

Cell i of `len(secret)`: pressing the button `secret[i]` moves to cell i + 1, "go back" moves to
cell i - 1, another button leaves the agent where it is; reaching the end wins. Instant and
exactly predictable, for tests and benchmarks of the rollout executor, and a task set on which a
tiny model learns through OpenRLHF's real trainer in minutes (`dataset_rows`).
"""

import json

from .base import Observation, state_digest

BUTTONS = ("press a", "press b", "press c")


class CorridorEnv:
    def __init__(self, secret="abc", task_id="corridor", max_steps=20, win_reward=10.0, invalid_penalty=0.1):
        if not secret or set(secret) - {b[-1] for b in BUTTONS}:
            raise ValueError(f"secret must be a non-empty string over 'abc', got {secret!r}")
        self.secret, self.task_id, self.max_steps = secret, task_id, max_steps
        self.win_reward, self.invalid_penalty = win_reward, invalid_penalty
        self.task = f"reach the end of the corridor ({len(secret)} cells)"
        self.cell, self.steps, self.done = 0, 0, False

    def _observe(self, text, valid):
        won = self.cell == len(self.secret)
        self.done = won or self.steps >= self.max_steps
        return Observation(
            text=text,
            admissible_actions=[] if won else list(BUTTONS) + (["go back"] if self.cell else []),
            state_key=state_digest(self.task_id, str(self.cell)),
            reward=self.win_reward * won - (0.0 if valid else self.invalid_penalty),
            done=self.done,
            won=won,
            valid=valid,
        )

    def reset(self):
        self.cell, self.steps = 0, 0
        return self._observe(f"You are in cell 0 of {len(self.secret)}.", valid=True)

    def step(self, action):
        if self.done:
            raise RuntimeError(f"CorridorEnv {self.task_id}: the episode is over; call reset()")
        self.steps += 1
        if action == f"press {self.secret[self.cell]}":
            self.cell += 1
            text = f"A door opens. You are in cell {self.cell} of {len(self.secret)}."
        elif action == "go back" and self.cell:
            self.cell -= 1
            text = f"You walk back to cell {self.cell}."
        elif action in BUTTONS:
            text = f"Click. You are still in cell {self.cell}."
        else:
            return self._observe("Nothing happens.", valid=False)
        return self._observe(text, valid=True)

    def fork(self):
        clone = CorridorEnv(self.secret, self.task_id, self.max_steps, self.win_reward, self.invalid_penalty)
        clone.task, clone.cell, clone.steps, clone.done = self.task, self.cell, self.steps, self.done
        return clone


def dataset_rows(tasks, secret="abc"):
    """OpenRLHF prompt-dataset rows: `tasks` copies of the corridor with this secret (one lock, so
    that what is learnt at a cell holds in every task)."""
    CorridorEnv(secret)  # checks the secret
    label = json.dumps({"env": "corridor", "secret": secret})
    return [{"input": f"reach the end of the corridor ({len(secret)} cells)", "label": label}] * tasks
