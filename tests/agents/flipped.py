"""Test-only: an agent executor whose training step samples carry the negated reward. Every
advantage of the step modes is odd in the reward ((R - mean) / std, R - mean, over step groups or
trajectory returns), so each advantage is exactly negated: a pipeline that learns with the real
agent must not learn with this one (tests/test_trainer_learning.py --flip-advantage-sign)."""


def flipped(executor_class):
    class Flipped(executor_class):
        async def execute(self, prompt, label, *args, **kwargs):
            output = await super().execute(prompt, label, *args, **kwargs)
            for step in output.get("step_samples", ()):  # evaluation episodes have none
                step["reward"] = -step["reward"]
            return output

    return Flipped
