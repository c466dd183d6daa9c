"""The upstream patch series (patches/) against OpenRLHF 0.11.2's wheel tree: it applies, OpenRLHF's
own shipped tests and the series' tests pass on the patched copy, the built-in estimators give
bit-identical advantages before and after, and the plugin takes the hooked path there.
(The real trainer on the patched copy: tests/test_trainer_cpu.py.)"""

import json
import os
import re
import subprocess
import sys

import torch

from conftest import REPO, unpack_openrlhf_wheel

SERIES_TESTS = ("tests/test_advantage_estimators.py", "tests/test_plugins.py", "tests/test_trainer_plugins.py")


def _env(openrlhf_root):
    """This environment, with `openrlhf` imported from `openrlhf_root`."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (openrlhf_root, os.environ.get("PYTHONPATH")) if p))
    env.pop("OPENRLHF_PLUGINS", None)
    return env


def _pytest(root):
    """OpenRLHF's tests in `root`, run there as OpenRLHF runs them; the outcome of each."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "tests"],
        cwd=root, env=_env(root), capture_output=True, text=True, timeout=1200,
    )
    return {test: outcome for outcome, test in re.findall(r"^(PASSED|FAILED|ERROR) (\S+)", result.stdout, re.M)}, result


def test_the_series_adds_the_hooks_that_released_openrlhf_lacks(patched_openrlhf):
    import openrlhf

    for hook in ("utils/plugins.py", "trainer/ppo_utils/advantage_estimators.py"):
        assert os.path.isfile(os.path.join(patched_openrlhf, "openrlhf", hook))
        assert not os.path.exists(os.path.join(os.path.dirname(openrlhf.__file__), hook))


def test_openrlhfs_shipped_tests_and_the_series_tests_pass_on_the_patched_copy(patched_openrlhf, tmp_path):
    released, _ = _pytest(unpack_openrlhf_wheel(tmp_path))
    patched, result = _pytest(patched_openrlhf)
    shipped = {test for test in released if not test.startswith(SERIES_TESTS)}
    assert shipped and all(released[test] == "PASSED" for test in shipped), released
    assert {test: patched.get(test) for test in shipped} == {test: "PASSED" for test in shipped}, result.stdout[-4000:]
    series = {test: outcome for test, outcome in patched.items() if test.startswith(SERIES_TESTS)}
    assert len(series) >= 18 and set(series.values()) == {"PASSED"}, result.stdout[-4000:]


def test_built_in_estimators_give_bit_identical_advantages_after_the_series(patched_openrlhf, tmp_path):
    probe = os.path.join(REPO, "tests", "openrlhf_advantages_probe.py")
    outputs = {}
    for tree, root in (("released", None), ("patched", patched_openrlhf)):
        outputs[tree] = str(tmp_path / f"{tree}.pt")
        env = _env(root) if root else dict(os.environ)
        result = subprocess.run([sys.executable, probe, outputs[tree]], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    released, patched = (torch.load(outputs[tree], weights_only=False) for tree in ("released", "patched"))
    assert sorted(released) == sorted(patched) and len(released) == 9  # 7 built-in estimators, 2 step modes
    for estimator in released:
        for (adv, ret, info), (p_adv, p_ret, p_info) in zip(released[estimator], patched[estimator], strict=True):
            assert torch.equal(adv, p_adv) and torch.equal(ret, p_ret), estimator
            assert info.keys() == p_info.keys() and all(torch.equal(info[k], p_info[k]) for k in info), estimator


def test_the_plugin_takes_the_hooked_path_where_openrlhf_has_the_series(patched_openrlhf):
    from openrlhf_3spo.plugin.compat import openrlhf_has_plugin_hooks

    assert not openrlhf_has_plugin_hooks()  # this environment: OpenRLHF 0.11.2 as released
    probe = (
        "from openrlhf.utils.plugins import load_plugins; load_plugins()\n"
        "from openrlhf_3spo.plugin.compat import openrlhf_has_plugin_hooks\n"
        "from openrlhf.trainer.ppo_utils.advantage_estimators import get_advantage_estimator\n"
        "from openrlhf.utils.plugins import TRAINER_COMPONENTS, TRAINER_CALLBACKS, PLUGIN_ARGUMENTS\n"
        "print(openrlhf_has_plugin_hooks(), get_advantage_estimator('3spo').shape_rewards.__qualname__,\n"
        "      sorted(c.__name__ for c in TRAINER_COMPONENTS.values()), [c.__name__ for c in TRAINER_CALLBACKS],\n"
        "      len(PLUGIN_ARGUMENTS))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=_env(patched_openrlhf), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[-2] == "True shape_3spo ['StepSamplesGenerator'] ['SPO3Callback'] 1"


def test_openrlhf_3spo_train_runs_openrlhfs_cli_on_the_patched_copy(patched_openrlhf):
    """`openrlhf-3spo train` takes the hooked path: OpenRLHF's own parser knows 3spo and --spo3.*
    (from the plugin), and the plugin's checks stop a bad setting in one line."""
    agent = os.path.join(REPO, "openrlhf_3spo", "agents", "alfworld_3spo.py")
    env = dict(_env(patched_openrlhf), PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    train = ["openrlhf-3spo", "train", "--advantage_estimator", "3spo", "--train.agent_func_path", agent, "--dry-run"]
    result = subprocess.run([*train, "--spo3.g_max", "4"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads(result.stdout[result.stdout.index("{"):])
    assert config["algo"]["advantage"]["estimator"] == "3spo" and config["spo3"]["g_max"] == 4
    result = subprocess.run([*train, "--spo3.alpha", "-1"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and result.stderr.strip().splitlines()[-1] == "openrlhf-3spo: error: --spo3.alpha must be > 0, got -1.0"
