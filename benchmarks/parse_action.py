"""Action parsing on adversarial model outputs: time per tag as the output grows. Linear parsing
keeps the time per tag flat (ratio near 1); a quadratic parser's grows with the length (an old regex
took 57 s on 16,000 unclosed tags).

    python benchmarks/parse_action.py

Ends with one JSON line of results.
"""

import json
import timeit

from openrlhf_3spo.envs.prompting import parse_action

ACTIONS = ["look", "go to fridge 1"]
SHAPES = {
    "unclosed": lambda n: "<action>" * n,
    "unclosed_then_closed": lambda n: "<action>" * n + "</action>",
    "alternating": lambda n: "</action><action>" * (n // 2),
    "closing": lambda n: "</action>" * n,
}


def seconds_per_tag(make, n, repeats=5):
    output = make(n)
    return min(timeit.repeat(lambda: parse_action(output, ACTIONS), number=1, repeat=repeats)) / n


def main():
    small, large = 1_000, 16_000
    results = {}
    for name, make in SHAPES.items():
        per_tag_small, per_tag_large = seconds_per_tag(make, small), seconds_per_tag(make, large)
        results[name] = {
            f"us_per_tag_at_{small}": round(per_tag_small * 1e6, 4),
            f"us_per_tag_at_{large}": round(per_tag_large * 1e6, 4),
            "ratio_large_to_small": round(per_tag_large / per_tag_small, 2),
        }
        print(f"{name:22s} {results[name]}")
    print(json.dumps({"benchmark": "parse_action", "results": results}))


if __name__ == "__main__":
    main()
