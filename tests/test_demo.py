"""The CPU demo's corridor run: real training, real files, and 3SPO's step credit shows."""

import json
import subprocess
import sys

from openrlhf_3spo.demo.corridor import CorridorConfig, run


def test_corridor_run_learns_and_writes_results(tmp_path):
    summary = run(CorridorConfig(tasks=8, iterations=15), str(tmp_path))
    assert {p.name for p in tmp_path.iterdir()} == {"metrics.jsonl", "curves.png", "summary.json"}
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and {r["method"] for r in rows} == {"3spo", "grpo"}
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    # the untrained policy wins with probability (1/6)^8; branching on step rewards finds the paths
    assert summary["3spo"]["final_greedy_success"] >= 0.75
    spo3 = [r for r in rows if r["method"] == "3spo"]
    assert spo3[0]["trained_samples"] > 0 and spo3[0]["mean_score"] == 1.0  # all states unseen at first
    assert spo3[-1]["table_size"] > 8 * 8


def test_demo_cli_rejects_bad_flags():
    result = subprocess.run(
        [sys.executable, "-m", "openrlhf_3spo.cli", "demo", "--iterations", "0"], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == "openrlhf-3spo: error: --iterations must be >= 1"
