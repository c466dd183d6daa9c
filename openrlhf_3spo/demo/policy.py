"""A small CPU policy for the demo, behind the engine interface the rollout executors call.

The policy is a softmax over the admissible actions listed in the step prompt, with a linear score
over hashed text features: (task word, action word), (current-observation word, action word),
(previous-action word, action word), the action verb, whether the action's words occur in the
task, the observation or the previous action (these carry over between games), and one feature
for the whole (task, previous action, observation, action), which lets the policy tell states
apart as an LLM can, so that cloning and RL can fit each game's own path. It reads
everything from the prompt that `envs.prompting.render_prompt` writes, so it sees exactly what an LLM
would, and answers `<action>ACTION</action>` like one.
"""

import functools
import re
import zlib
from types import SimpleNamespace

import numpy as np

_WORD = re.compile(r"[a-z]+")
_PREVIOUS = re.compile(r"^\[Action \d+: (.*)\]$", re.MULTILINE)
_ACTIONS_HEAD = "\n\nAdmissible actions: ["
_OBSERVATION_HEAD = "Current observation: "
_STOP_WORDS = frozenset("a an the to in on of from with you your is are and at it this that".split())
# feature groups: each group's features are hashed with their own salt and scaled to unit norm
_TASK, _OBS, _PREV, _VERB, _MATCH, _STATE = range(6)
# the state-action feature's value: small, so that behaviour cloning fits it over several epochs
# (K epochs of cloning give a start that knows part of the walkthroughs, not all)
STATE_VALUE = 0.1


class ByteTokenizer:
    """UTF-8 bytes as token ids: the chat template is the text itself."""

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=True, return_dict=False):
        text = "".join(m["content"] for m in messages)
        return list(text.encode("utf-8")) if tokenize else text

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids, skip_special_tokens=False):
        return bytes(ids).decode("utf-8", errors="replace")


def parse_prompt(text):
    """(task, current observation, previous action or "", admissible actions) from a step prompt."""
    parts = text.split("\n\n", 2)
    task = parts[1].removeprefix("Your task is to: ").removesuffix(".") if len(parts) > 1 else ""
    head = text.rfind(_ACTIONS_HEAD)
    if head < 0:
        raise ValueError("prompt has no 'Admissible actions: [...]' line")
    # the list ends at the last "]" before the instruction paragraph; items are quoted and joined by ", "
    start = head + len(_ACTIONS_HEAD)
    end = text.find("\n\n", start)
    listed = text[start : end if end >= 0 else len(text)]
    listed = listed[: listed.rfind("]")]
    actions = listed[1:-1].split("', '") if len(listed) >= 2 else []
    obs_head = text.rfind(_OBSERVATION_HEAD, 0, head)
    observation = text[obs_head + len(_OBSERVATION_HEAD) : head] if obs_head >= 0 else ""
    previous = _PREVIOUS.findall(text[:obs_head] if obs_head >= 0 else "")
    return task, observation, previous[-1] if previous else "", actions


def _words(text):
    return [w for w in dict.fromkeys(_WORD.findall(text.lower())) if w not in _STOP_WORDS]


def _hash(text):
    return zlib.crc32(text.encode("utf-8"))


def _action_features(dim, state, task_words, obs_words, prev_words, action):
    """[(index, value)] of phi(s, a) for one action; each pair group is scaled to unit norm."""
    words = _words(action)
    verb, args = (words[0], words[1:]) if words else ("", [])
    feats = [(_hash(f"{_VERB}|{verb}") % dim, 1.0), (_hash(f"{_STATE}|{state}|{action}") % dim, STATE_VALUE)]
    for group, context in ((_TASK, task_words), (_OBS, obs_words), (_PREV, prev_words)):
        if context and words:
            scale = 1.0 / np.sqrt(len(context) * len(words))
            feats += [(_hash(f"{group}|{c}|{w}") % dim, scale) for c in context for w in words]
    # word overlap, per verb: what carries over between games and objects
    for name, context in (("task", task_words), ("obs", obs_words), ("prev", prev_words)):
        hits = sum(w in context for w in args)
        if hits:
            feats.append((_hash(f"{_MATCH}|{verb}|{name}|{min(hits, 3)}") % dim, 1.0))
    return feats


@functools.lru_cache(maxsize=8192)
def prompt_features(dim, prompt):
    """-> (actions, indices, values, owner) for the prompt's UTF-8 bytes: phi(s, a_k) is the sum of
    values[owner == k] at indices. Cached: a context is featurised for sampling and again for its update."""
    task, observation, previous, actions = parse_prompt(prompt.decode("utf-8", errors="replace"))
    task_words, obs_words, prev_words = _words(task), _words(observation), _words(previous)
    state = f"{task}|{previous}|{observation}"
    indices, values, owner = [], [], []
    for k, action in enumerate(actions):
        for index, value in _action_features(dim, state, task_words, obs_words, prev_words, action):
            indices.append(index)
            values.append(value)
            owner.append(k)
    return actions, np.array(indices, dtype=np.int64), np.array(values), np.array(owner, dtype=np.int64)


class LinearPolicy:
    """Softmax over the admissible actions, logits = w . phi(s, a), `dim` hashed features, Adam."""

    def __init__(self, dim=65536, lr=0.05, seed=0, betas=(0.9, 0.999), eps=1e-8):
        self.dim, self.lr, self.betas, self.eps = dim, lr, betas, eps
        self.w, self.m, self.v, self.t = np.zeros(dim), np.zeros(dim), np.zeros(dim), 0
        self.rng = np.random.default_rng(seed)
        self.tokenizer = ByteTokenizer()

    def _logits(self, prompt_ids):
        actions, indices, values, owner = prompt_features(self.dim, bytes(prompt_ids))
        if not actions:
            raise ValueError("the prompt lists no admissible action")
        return actions, np.bincount(owner, weights=self.w[indices] * values, minlength=len(actions))

    def probs(self, prompt_ids):
        actions, z = self._logits(prompt_ids)
        return actions, _softmax(z)

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        """The engine call of the executors: `sampling_params.n` samples of `<action>...</action>`,
        with log pi(a) (at temperature 1) on each answer's first token when logprobs are asked for."""
        actions, z = self._logits(prompt_token_ids)
        temperature, n = sampling_params.temperature, sampling_params.n
        if temperature > 0:
            picks = self.rng.choice(len(actions), size=n, p=_softmax(z / temperature))
        else:
            picks = [int(np.argmax(z))] * n  # greedy; ties go to the first listed action
        log_p = np.log(_softmax(z))
        outputs = []
        for k in picks:
            text = f"<action>{actions[k]}</action>"
            ids = list(text.encode("utf-8"))
            logprobs = None
            if sampling_params.logprobs is not None:
                logprobs = [{t: SimpleNamespace(logprob=float(log_p[k]) if i == 0 else 0.0)} for i, t in enumerate(ids)]
            outputs.append(SimpleNamespace(text=text, token_ids=ids, finish_reason="stop", logprobs=logprobs))
        return SimpleNamespace(outputs=outputs)

    def gradient(self, samples, advantages):
        """Mean over samples of A * grad log pi(a|s), grad log pi(a|s) = phi(s, a) - E_pi[phi(s, .)].
        Samples are dicts with `context_ids` and `action` (the action the env was sent)."""
        grad = np.zeros(self.dim)
        for sample, advantage in zip(samples, advantages):
            actions, indices, values, owner = prompt_features(self.dim, bytes(sample["context_ids"]))
            if sample["action"] not in actions or advantage == 0:
                continue  # an invalid answer is no choice among the listed actions: no gradient here
            coeff = -_softmax(np.bincount(owner, weights=self.w[indices] * values, minlength=len(actions)))
            coeff[actions.index(sample["action"])] += 1.0
            np.add.at(grad, indices, values * coeff[owner] * advantage)
        return grad / max(len(samples), 1)

    def update(self, samples, advantages):
        """One Adam ascent step on the policy-gradient objective."""
        if not len(samples):
            return
        grad = self.gradient(samples, advantages)
        (b1, b2), self.t = self.betas, self.t + 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad**2
        m_hat, v_hat = self.m / (1 - b1**self.t), self.v / (1 - b2**self.t)
        self.w += self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def _softmax(z):
    z = np.exp(z - z.max())
    return z / z.sum()
