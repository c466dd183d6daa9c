"""Evaluation as the published tables report it: one plain episode per task (the eval temperature, one
sample per step, nothing recorded), success per ALFWorld task type and overall, WebShop score and
success. `eval_episode` is every step mode's eval episode, in OpenRLHF's eval and in `evaluate`: the
same prompts and episode code as training (`episode.play`)."""

import asyncio
import json

from tqdm import tqdm

from openrlhf_3spo.rollout.episode import Episode, play
from openrlhf_3spo.rollout.request import TaskRequest

# ALFWorld task types as the papers' columns name them
ALFWORLD_COLUMNS = {
    "pick_and_place_simple": "Pick",
    "look_at_obj_in_light": "Look",
    "pick_clean_then_place_in_recep": "Clean",
    "pick_heat_then_place_in_recep": "Heat",
    "pick_cool_then_place_in_recep": "Cool",
    "pick_two_obj_and_place": "Pick2",
}


async def eval_episode(make_env, env_name, settings, prompt, label, sampling_params, max_length, tokenizer, engine):
    """One plain episode (one sample per step, nothing recorded), as OpenRLHF's single-response
    output whose reward is task success (1 or 0): what the eval metrics of every step mode count.
    WebShop episodes also report the purchase score."""
    label = TaskRequest.from_label(label).label
    env = await make_env(label)
    first = await env.reset()
    task = await env.get("task")
    steps, ended, _ = await play(Episode.start(env, task, first), env_name, settings, sampling_params, max_length, tokenizer, engine)
    score = await env.get("score") if env_name == "webshop" else None
    env.close()
    context, action = (steps[-1]["context_ids"], steps[-1]["action_ids"]) if steps else ([], [])
    won = float(ended.observation.won)
    return {
        "prompt": prompt,
        "label": label,
        "observation_tokens": context + action,
        "action_ranges": [(len(context), len(context) + len(action))],
        "rollout_log_probs": None,
        "reward": won,
        "scores": won,
        "extra_logs": {"won": won, "steps": float(len(steps)), "score": float(score or 0.0)},
    }


async def evaluate_tasks(rows, env_name, make_env, settings, sampling_params, max_length, tokenizer, engine):
    """One episode per dataset row, all in flight at once. -> one result per row:
    {"label", "won", "score", "steps"}."""
    bar = tqdm(total=len(rows), desc=f"evaluate {env_name}", unit="task")

    async def one(row):
        out = await eval_episode(make_env, env_name, settings, row["input"], row["label"], sampling_params, max_length,
                                 tokenizer, engine)
        bar.update()
        logs = out["extra_logs"]
        return {"label": row["label"], "won": bool(logs["won"]), "score": logs["score"], "steps": int(logs["steps"])}

    try:
        return await asyncio.gather(*(one(row) for row in rows))
    finally:
        bar.close()


def summarize(env_name, results):
    """The papers' table as {column: value in %}: ALFWorld success per task type and "All"; WebShop
    "Score" (mean purchase score x 100) and "Succ."."""
    if not results:
        raise ValueError("no tasks to evaluate")
    if env_name == "webshop":
        return {
            "Score": 100 * sum(r["score"] for r in results) / len(results),
            "Succ.": 100 * sum(r["won"] for r in results) / len(results),
            "tasks": len(results),
        }
    table = {}
    for task_type, column in ALFWORLD_COLUMNS.items():
        mine = [r for r in results if json.loads(r["label"]).get("task_type") == task_type]
        if mine:
            table[column] = 100 * sum(r["won"] for r in mine) / len(mine)
    table["All"] = 100 * sum(r["won"] for r in results) / len(results)
    table["tasks"] = len(results)
    return table


def format_table(table):
    columns = [c for c in table if c != "tasks"]
    head = " | ".join(f"{c:>6}" for c in columns)
    values = " | ".join(f"{table[c]:6.1f}" for c in columns)
    return f"| {head} |\n| {values} |\n({table['tasks']} tasks)"
