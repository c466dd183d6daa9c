"""Evaluation as the published tables report it: one plain episode per task (the eval temperature, one
sample per step, nothing recorded), success per ALFWorld task type and overall, WebShop score and
success. The same prompts and episode code as training (`GRPOExecutor.evaluate`)."""

import asyncio
import json

from tqdm import tqdm

from openrlhf_3spo.rollout.grpo import GRPOExecutor

# ALFWorld task types as the papers' columns name them
ALFWORLD_COLUMNS = {
    "pick_and_place_simple": "Pick",
    "look_at_obj_in_light": "Look",
    "pick_clean_then_place_in_recep": "Clean",
    "pick_heat_then_place_in_recep": "Heat",
    "pick_cool_then_place_in_recep": "Cool",
    "pick_two_obj_and_place": "Pick2",
}


async def evaluate_tasks(rows, env_name, make_env, settings, sampling_params, max_length, tokenizer, engine):
    """One episode per dataset row, all in flight at once. -> one result per row:
    {"label", "won", "score", "steps"}."""
    executor = GRPOExecutor(make_env, env_name, settings)
    bar = tqdm(total=len(rows), desc=f"evaluate {env_name}", unit="task")

    async def one(row):
        out = await executor.evaluate(row["input"], {"label": row["label"], "eval": True}, sampling_params, max_length, tokenizer, engine)
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
