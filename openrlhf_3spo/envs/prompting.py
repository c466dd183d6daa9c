"""The prompt and action protocol of the published ALFWorld/WebShop results (GiGPO, 3SPO).

A step's prompt holds the task, the last H (observation, action) pairs, the current observation
and the admissible actions; the model answers `<think>...</think><action>...</action>`.
"""

import re

HISTORY_LENGTH = 2
_OPEN_TAG = re.compile(r"<action>", re.IGNORECASE)
_CLOSE_TAG = re.compile(r"</action>", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
# escaped in a literal: re.escape also escapes spaces, which vLLM's grammar engine warns about
_REGEX_SPECIAL = re.compile(r"[.^$*+?{}\[\]\\|()]")
SEARCH_TEMPLATE = "search[<your query>]"
_SEARCH = re.compile(r"search\[\s*[^\s\]][^\]]*\]")

ENV_INTROS = {
    "alfworld": "You are an expert agent acting in the ALFRED embodied household environment.",
    "webshop": "You are an expert agent shopping in the WebShop online store.",
    "corridor": "You are an agent in a corridor of locked doors.",
}

_INSTRUCTION = (
    "Now choose your next action. First reason step by step about the situation inside <think> </think> "
    "tags, then give exactly one admissible action inside <action> </action> tags."
)


def normalize_action(text: str) -> str:
    return _SPACES.sub(" ", text).strip().lower()


def answer_pattern(admissible_actions: list[str]) -> str:
    """A regex matched only by an answer `<action>A</action>` that names one admissible action, with
    any one-line query in place of the search template: what `--spo3.decoding constrained` asks
    vLLM's structured outputs for."""
    choices = [r"search\[[^\]\s][^\]\n]*\]" if a == SEARCH_TEMPLATE else _REGEX_SPECIAL.sub(r"\\\g<0>", a) for a in admissible_actions]
    return "<action>(" + "|".join(choices) + ")</action>"


def parse_action(output: str, admissible_actions: list[str]) -> str | None:
    """The admissible action named in the last <action> tag (case and whitespace normalised), or None.

    The tag is the last </action> and the last <action> before it: models echo the instruction's
    "<action> tags" in their reasoning, and an earlier unclosed <action> must not swallow the answer.
    Linear in the output's length, whatever the tags."""
    if not isinstance(output, str):
        return None
    closing = [m.start() for m in _CLOSE_TAG.finditer(output)]
    if not closing:
        return None
    opening = [m.end() for m in _OPEN_TAG.finditer(output, 0, closing[-1])]
    if not opening:
        return None
    wanted = normalize_action(output[opening[-1] : closing[-1]])
    for action in admissible_actions:
        if normalize_action(action) == wanted:
            return action
    # a listed search template ("search[<your query>]") admits any non-empty query
    if SEARCH_TEMPLATE in admissible_actions and _SEARCH.fullmatch(wanted):
        return wanted
    return None


def render_prompt(env_name, task, history, observation, admissible_actions, history_length=HISTORY_LENGTH):
    """One step's user message. `history` is the list of (observation, action) pairs taken so far."""
    if env_name not in ENV_INTROS:
        raise ValueError(f"env_name must be one of {sorted(ENV_INTROS)}, got {env_name!r}")
    if history_length < 0:
        raise ValueError(f"history_length must be >= 0, got {history_length}")
    parts = [ENV_INTROS[env_name], f"Your task is to: {task}."]
    recent = history[len(history) - history_length :] if history_length else []
    if recent:
        first = len(history) - len(recent) + 1
        lines = [f"[Observation {first + i}: {obs.strip()}]\n[Action {first + i}: {act}]" for i, (obs, act) in enumerate(recent)]
        parts.append(
            f"You have taken {len(history)} step(s) so far. Your last {len(recent)} observation(s) and action(s):\n"
            + "\n".join(lines)
        )
    parts.append(f"You are now at step {len(history) + 1}. Current observation: {observation.strip()}")
    parts.append("Admissible actions: [" + ", ".join(f"'{a}'" for a in admissible_actions) + "]")
    parts.append(_INSTRUCTION)
    return "\n\n".join(parts)
