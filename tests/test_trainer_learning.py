"""OpenRLHF's real trainer learns: `benchmarks/trainer_learning.py`'s corridor run for step-wise
GRPO, through Ray, DeepSpeed, vLLM and the agent functions with a tiny random model.

Eval success (sampled episodes; the mean of the last two evals) must rise by RISE over the start
model's. A wrong sign, an advantage given to the wrong sample, a lost action mask or a stale
weight sync would keep it flat.
`pytest tests/test_trainer_learning.py --flip-advantage-sign` runs the same test with every
advantage negated (tests/agents/corridor_grpo_flipped.py): then it must fail.

3SPO is not here: on this task its runs either learn or collapse to a policy that never wins
(BENCHMARKS.md), so a test of it would fail by chance.
"""

import dataclasses
import importlib.util
import os

import pytest

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENTS = os.path.join(REPO, "tests", "agents")
RISE = 0.20  # mean of the last two evals over the start; benchmark runs: +0.3 to +0.5, flipped: about 0


def _benchmark():
    spec = importlib.util.spec_from_file_location("trainer_learning", os.path.join(REPO, "benchmarks", "trainer_learning.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCHMARK = _benchmark()
# the benchmark's run, with OpenRLHF's eval every 8 steps (each takes about 15 s)
ARGS = dataclasses.replace(BENCHMARK.Args(estimators="grpo"), eval_every=8).check()


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """The start model, the datasets and the start model's eval success."""
    out = str(tmp_path_factory.mktemp("trainer-learning"))
    model, train_file, eval_file = BENCHMARK.prepare(ARGS, out)
    return out, model, (train_file, eval_file), BENCHMARK.start_success(ARGS, model, eval_file, out)


@pytest.mark.parametrize("estimator", ARGS.names())
def test_eval_success_rises_through_the_real_trainer(estimator, start, request):
    out, model, data, before = start
    agent = None
    if request.config.getoption("--flip-advantage-sign"):
        agent = os.path.join(AGENTS, f"corridor_{BENCHMARK.ESTIMATORS[estimator][0]}_flipped.py")
    run = BENCHMARK.train(ARGS, estimator, model, data, out, agent)
    print(f"{estimator}{' (flipped)' if agent else ''}: start {before:.3f}, evals {run['evals']}, {run['seconds']:.0f} s")
    assert sorted(run["evals"]) == list(range(ARGS.eval_every, ARGS.steps + 1, ARGS.eval_every))
    last_two = (run["evals"][ARGS.steps - ARGS.eval_every] + run["evals"][ARGS.steps]) / 2  # one eval's own spread is ~0.06
    assert last_two - before >= RISE, f"{estimator}: eval success {before:.3f} at the start, evals {run['evals']}"
