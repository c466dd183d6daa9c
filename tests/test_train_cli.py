"""`openrlhf-3spo train`: OpenRLHF's own parser and checks, --dry-run on every recipe, one-line errors,
and the Ray workers it starts have the plugin registered."""

import glob
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import param_id

from openrlhf_3spo.agents import agent_file
from openrlhf_3spo.cli import INSTALL_HINTS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(glob.glob(os.path.join(REPO, "recipes", "*_*.sh")))
ENV = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
AGENT_3SPO = os.path.join(REPO, "openrlhf_3spo", "agents", "alfworld_3spo.py")


def _config(stdout):
    return json.loads(stdout)  # a dry run's stdout is its JSON only


def _train(*args):
    return subprocess.run(
        ["openrlhf-3spo", "train", *args], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300
    )


@pytest.mark.parametrize("recipe", RECIPES, ids=os.path.basename)
def test_every_recipe_passes_a_dry_run(recipe, tmp_path_factory):
    tmp_path, data = tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("data")
    for split in ("train", "eval"):  # a dry run checks that the datasets exist
        (data / f"{split}.jsonl").write_text("")
    result = subprocess.run(["bash", recipe, "--dry-run"], capture_output=True, text=True, env=dict(ENV, DATA=str(data)),
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    config = _config(result.stdout)
    estimator = config["algo"]["advantage"]["estimator"]
    env, mode = os.path.basename(recipe).split("_")[:2]
    assert estimator == {"3spo": "3spo", "grpo": "step_grpo", "gigpo": "gigpo"}[mode]
    assert config["rollout"]["n_samples_per_prompt"] == 8 and config["train"]["agent_func_path"].endswith(f"{env}_{mode}.py")
    assert config["spo3"] == {
        "alpha": 50.0, "xi": 10.0, "zeta": 0.1, "omega_k": 0.1, "g_max": 8, "state_key": "env", "adv_norm": "mean_std",
        "gigpo_gamma": 0.95, "gigpo_step_weight": 1.0, "gigpo_norm": "mean", "history_length": 2, "invalid_penalty": 0.1, "score_shards": 1, "state_actor": "spo3-state",
        "n_rule": "adaptive", "write_off": "branch", "tried_pairs": "steer", "backtrack": "recent", "continue_along": "best",
        "max_steps": 50 if env == "alfworld" else 15, "env_workers": 16, "webshop_reward": "success", "decoding": "free",
    }
    # iterations as in the published scripts: ALFWorld 400, WebShop 150 batches of 16 tasks; constant lr
    assert config["train"]["num_episodes"] * config["data"]["max_samples"] // config["rollout"]["batch_size"] == (
        400 if env == "alfworld" else 150
    )
    assert config["actor"]["lr_scheduler"] == "constant" and config["actor"]["lr_warmup_ratio"] == 0
    assert not os.listdir(tmp_path)  # nothing started, nothing written


def test_alias_and_flags_resolve():
    result = _train("--advantage_estimator", "3spo", "--train.agent_func_path", AGENT_3SPO, "--spo3.g_max", "4",
                    "--spo3.adv_norm", "mean", "--rollout.n_samples_per_prompt", "4", "--dry-run")
    assert result.returncode == 0, result.stderr[-2000:]
    config = _config(result.stdout)
    assert config["algo"]["advantage"]["estimator"] == "3spo"
    assert (config["spo3"]["g_max"], config["spo3"]["adv_norm"]) == (4, "mean")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--advantage_estimator", "3spo"], "--advantage_estimator 3spo needs --train.agent_func_path"),
        (["--advantage_estimator", "3spo", "--train.agent_func_path", AGENT_3SPO, "--spo3.g_max", "1"], "--spo3.g_max must be >= 2"),
        (["--advantage_estimator", "3spo", "--train.agent_func_path", AGENT_3SPO, "--spo3.alpha", "0"], "--spo3.alpha must be > 0"),
        (["--advantage_estimator", "3spo", "--train.agent_func_path", AGENT_3SPO, "--train.async_enable"], "synchronous rollouts"),
        (["--spo3.state_key", "pixels"], "argument --spo3.state_key: invalid choice"),
        (["--spo3.write_off", "never"], "argument --spo3.write_off: invalid choice"),
        (["--advantage_estimator", "group_norm", "--train.agent_func_path", AGENT_3SPO],
         "alfworld_3spo.py trains with --advantage_estimator 3spo, not group_norm"),
        (["--advantage_estimator", "3spo", "--train.agent_func_path", agent_file("alfworld", "grpo")],
         "alfworld_grpo.py trains with --advantage_estimator step_grpo, not 3spo"),
        (["--advantage_estimator", "gigpo"], "--advantage_estimator gigpo needs --train.agent_func_path naming a gigpo agent"),
        (["--advantage_estimator", "gigpo", "--train.agent_func_path", agent_file("alfworld", "grpo")],
         "alfworld_grpo.py trains with --advantage_estimator step_grpo, not gigpo"),
        (["--advantage_estimator", "gigpo", "--train.agent_func_path", agent_file("webshop", "gigpo"), "--spo3.gigpo_norm", "std"],
         "argument --spo3.gigpo_norm: invalid choice"),
        (["--advantage_estimator", "ppo2"], "argument --algo.advantage.estimator: invalid choice"),
        (["--advantage_estimator", "3spo", "--train.agent_func_path", "/no/such/agent.py"], "--train.agent_func_path /no/such/agent.py: no such file"),
        (["--advantage_estimator", "3spo", "--train.agent_func_path", AGENT_3SPO, "--data.prompt_dataset", "missing/train.jsonl"],
         "--data.prompt_dataset missing/train.jsonl: no such file or folder"),
        (["--advantage_estimator", "3spo", "--train.agent_func_path", AGENT_3SPO, "--actor.model_name_or_path", "./no-model"],
         "--actor.model_name_or_path ./no-model: no such file or folder"),
        (["--advantage_estimator", "group_norm", "--train.agent_func_path", agent_file("alfworld", "multiturn"),
          "--spo3.decoding", "constrained"], "--spo3.decoding constrained needs a step-mode agent function"),
        (["--spo3.decoding", "constrained"], "--spo3.decoding constrained needs a step-mode agent function"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        # OpenRLHF's own assert, as one line too
        (["--advantage_estimator", "group_norm", "--rollout.n_samples_per_prompt", "1"], "group_norm requires n_samples_per_prompt > 1"),
    ],
    ids=param_id,
)
def test_bad_settings_give_one_clear_line(args, message):
    result = _train(*args, "--dry-run")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()  # one line, with nothing before it
    assert len(lines) == 1 and lines[0].startswith("openrlhf-3spo: error: ") and message in lines[0], result.stderr[-1500:]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--vllm.enable_sleep"], "vLLM cannot sleep on CPU: drop --vllm.enable_sleep"),
        (["--vllm.tensor_parallel_size", "2"], "use --vllm.tensor_parallel_size 1 on CPU"),
        (["--ds.packing_samples"], "sample packing needs flash-attn"),
        (["--ds.attn_implementation", "flash_attention_2"], "--cpu runs with --ds.attn_implementation sdpa, not flash_attention_2"),
        (["--vllm.sync_backend=nccl"], "--cpu runs with --vllm.sync_backend gloo, not nccl"),
    ],
    ids=param_id,
)
def test_cpu_mode_refuses_what_cannot_work_without_a_gpu(args, message):
    result = _train("--cpu", "--advantage_estimator", "3spo", "--train.agent_func_path", AGENT_3SPO, *args, "--dry-run")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()  # one line, with nothing before it
    assert len(lines) == 1 and lines[0].startswith("openrlhf-3spo: error: ") and message in lines[0], result.stderr[-1500:]


def test_cpu_mode_sets_its_flags():
    result = _train("--cpu", "--advantage_estimator", "3spo", "--train.agent_func_path", AGENT_3SPO, "--dry-run")
    assert result.returncode == 0, result.stderr[-2000:]
    config = _config(result.stdout)
    assert (config["ds"]["attn_implementation"], config["vllm"]["sync_backend"], config["vllm"]["enforce_eager"]) == ("sdpa", "gloo", True)


def test_tiny_model_refuses_a_folder_in_use(tmp_path):
    (tmp_path / "x").write_text("")
    result = subprocess.run(["openrlhf-3spo", "tiny-model", "--out", str(tmp_path)], capture_output=True, text=True, env=ENV)
    assert result.returncode != 0 and result.stderr.strip() == f"openrlhf-3spo: error: --out {tmp_path}: not an empty folder"


def test_ray_workers_started_by_the_cli_have_the_plugin_registered(tmp_path):
    """The real CLI path up to OpenRLHF's strategy: Ray starts with the plugin's runtime env, and an
    actor then sees the plugin installed (OpenRLHF as released: through `compat`)."""
    probe = textwrap.dedent(
        f"""
        import json, os, sys, ray, openrlhf.utils

        @ray.remote
        class Probe:
            def look(self):
                import openrlhf.trainer.ppo_trainer as t
                wrapped = hasattr(t.RemoteExperienceMaker.compute_advantages_and_returns, "__wrapped__")
                return [wrapped, t.SamplesGenerator.__name__, os.environ["NCCL_DEBUG"]]

        def stop_here(args):  # in place of OpenRLHF's DeepSpeed strategy: look, then end the run
            seen = ray.get(Probe.remote().look.remote())
            print("PROBE " + json.dumps(seen))
            ray.shutdown()
            sys.exit(0)

        openrlhf.utils.get_strategy = stop_here
        from openrlhf_3spo.cli import main
        main(["train", "--advantage_estimator", "3spo", "--train.agent_func_path", {AGENT_3SPO!r},
              "--spo3.state_actor", "cli-probe", "--ckpt.path", {str(tmp_path)!r}])
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, timeout=300)
    line = next((l for l in result.stdout.splitlines() if l.startswith("PROBE ")), None)
    assert line, result.stderr[-3000:]
    assert json.loads(line[6:]) == [True, "StepSamplesGenerator", "WARN"]


def test_every_substitution_is_listed_in_one_place_and_the_version_is_checked(monkeypatch):
    """`compat.load_plugin` on OpenRLHF as released: what changes in the trainer's and the experience
    maker's modules (their attributes, and their classes' own) is exactly what `SUBSTITUTED` lists."""
    from openrlhf_3spo.plugin import compat

    probe = textwrap.dedent(
        """
        import json
        import openrlhf.trainer.ppo_trainer as ppo_trainer
        import openrlhf.trainer.ppo_utils.experience_maker as experience_maker
        from openrlhf_3spo.plugin import compat

        def symbols(module):
            found = {}
            for name, value in vars(module).items():
                found[name] = value
                if isinstance(value, type) and value.__module__ == module.__name__:
                    found.update({f"{name}.{k}": v for k, v in vars(value).items()})
            return found

        modules = (ppo_trainer, experience_maker)
        before = {m: symbols(m) for m in modules}
        compat.load_plugin()
        changed = [f"{m.__name__}.{k}" for m in modules for k, v in symbols(m).items() if before[m].get(k) is not v]
        print("PROBE " + json.dumps(sorted(changed)))
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, timeout=300)
    line = next((l for l in result.stdout.splitlines() if l.startswith("PROBE ")), None)
    assert line, result.stderr[-3000:]
    listed = sorted(f"{module}.{symbol}" for module, symbol, _ in compat.SUBSTITUTED if module != "argparse")
    assert json.loads(line[6:]) == listed
    monkeypatch.setattr("importlib.metadata.version", lambda name: "0.12.0")
    with pytest.raises(RuntimeError, match="supports openrlhf==0.11.2, found 0.12.0"):
        compat.check_openrlhf_version()


def test_other_parsers_are_left_alone(tmp_path):
    """While OpenRLHF's CLI runs, `import argparse` finds `compat.ParserWithPlugins`, which touches
    OpenRLHF's parser only (one with its estimator flag): another parser and its errors are argparse's own."""
    probe = textwrap.dedent(
        """
        import sys, openrlhf.utils
        from openrlhf_3spo.plugin import train

        def stop_here(args):
            import argparse  # as any module imported during the run finds it

            other = argparse.ArgumentParser(prog="other")
            other.add_argument("--x", type=int, default=1)
            spo3 = any(a.dest.startswith("spo3.") for a in other._actions)
            print("OTHER", type(other).__name__, other.parse_args(["--x", "5"]).x, spo3, flush=True)
            other.parse_args(["--y"])  # argparse's own error: usage, then the message, exit 2

        openrlhf.utils.get_strategy = stop_here
        train.main(["--advantage_estimator", "step_grpo", "--rollout.n_samples_per_prompt", "2",
                    "--train.agent_func_path", AGENT, "--ckpt.path", CKPT])
        """
    ).replace("AGENT", repr(agent_file("alfworld", "grpo"))).replace("CKPT", repr(str(tmp_path)))
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert "OTHER ParserWithPlugins 5 False" in result.stdout, result.stderr[-2000:]
    assert result.returncode == 2 and "usage: other" in result.stderr and "other: error: unrecognized arguments: --y" in result.stderr


def test_recipes_ship_with_the_package_and_run_from_a_copy(tmp_path):
    """`openrlhf-3spo recipes --copy r`, then a recipe's dry run from outside the repository: the
    agent file comes from `openrlhf-3spo agent-file`, never a checkout path or a bare python."""
    listed = subprocess.run(["openrlhf-3spo", "recipes"], capture_output=True, text=True, env=ENV, timeout=120)
    assert listed.returncode == 0 and "alfworld_3spo_1.5b.sh" in listed.stdout and "2 x H100" in listed.stdout
    copied = subprocess.run(["openrlhf-3spo", "recipes", "--copy", "r"], capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120)
    assert copied.returncode == 0, copied.stderr
    assert sorted(os.listdir(tmp_path / "r")) == sorted(os.path.basename(r) for r in RECIPES + [os.path.join("x", "train.sh")])
    os.makedirs(tmp_path / "data" / "alfworld")
    for split in ("train", "eval"):  # where the recipe reads by default; a dry run checks they exist
        (tmp_path / "data" / "alfworld" / f"{split}.jsonl").write_text("")
    result = subprocess.run(["bash", "r/alfworld_grpo_1.5b.sh", "--dry-run"], capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _config(result.stdout)["train"]["agent_func_path"] == agent_file("alfworld", "grpo")
    path = subprocess.run(["openrlhf-3spo", "agent-file", "webshop", "3spo"], capture_output=True, text=True, env=ENV, timeout=120)
    assert path.stdout.strip() == agent_file("webshop", "3spo") and os.path.isfile(path.stdout.strip())


@pytest.mark.parametrize("module", ["flash_attn", "vllm"])
def test_a_missing_heavy_dependency_is_one_line(module):
    """OpenRLHF imports flash_attn and vllm at module level: without them, one line that says how
    to install them, not an ImportError traceback."""
    probe = (f"import sys; sys.modules[{module!r}] = None\n"  # as if not installed
             "from openrlhf_3spo.cli import main\n"
             f"main(['train', '--advantage_estimator', '3spo', '--train.agent_func_path', {AGENT_3SPO!r}, '--dry-run'])\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        f"openrlhf-3spo: error: {module} is not installed: {INSTALL_HINTS[module]}"], result.stderr[-2000:]


def test_an_error_stays_one_line_whatever_an_import_writes_to_stderr(tmp_path):
    """A stand-in for a third-party package that writes to stderr when imported, from Python and
    from C (as bitsandbytes does on CPUs with AVX-512 BF16): here OpenRLHF's module-level flash_attn
    import, which then serves the --cpu mode's stand-in."""
    from openrlhf_3spo.plugin.cpu import SHIM_DIR

    shim = os.path.join(SHIM_DIR, "flash_attn")
    (tmp_path / "flash_attn").mkdir()
    (tmp_path / "flash_attn" / "__init__.py").write_text(textwrap.dedent(f"""\
        import os, sys
        sys.stderr.write("stand-in: a note from Python at import\\n")
        os.write(2, b"stand-in: a note from C at import\\n")
        __path__.append({shim!r})
        exec(open(os.path.join({shim!r}, "__init__.py")).read())
    """))
    env = dict(ENV, PYTHONPATH=str(tmp_path))
    run = lambda *args: subprocess.run(["openrlhf-3spo", "train", "--advantage_estimator", "3spo", *args, "--dry-run"],  # noqa: E731
                                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    failed = run()
    assert failed.returncode != 0
    assert failed.stderr.strip().splitlines() == [
        "openrlhf-3spo: error: --advantage_estimator 3spo needs --train.agent_func_path naming a 3spo agent function "
        "(its path: openrlhf-3spo agent-file alfworld 3spo)"], failed.stderr[-2000:]
    # the stand-in was imported: once a run validates, what it wrote is shown
    validated = run("--train.agent_func_path", AGENT_3SPO)
    assert validated.returncode == 0, validated.stderr[-2000:]
    assert "stand-in: a note from Python at import" in validated.stderr and "stand-in: a note from C at import" in validated.stderr
