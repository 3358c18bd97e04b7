"""The category mix (report §3 data mix): sample each category to its target count, reproducibly.

Two passes over the file, holding only sample positions: the first counts each category, the second writes the
chosen samples in their input order. A category with fewer samples than its target keeps all of them and is
reported as short; categories outside the mix are dropped with that reason.
"""

from __future__ import annotations

import random
from pathlib import Path

from yulan.schema.curation import MixConfig
from yulan.stages.curation.io import StepFiles


def choose(positions: dict[str, list[int]], config: MixConfig, seed: int) -> dict[str, set[int]]:
    chosen = {}
    for category, share in config.categories.items():
        available = positions.get(category, [])
        rng = random.Random(f"{seed}:{category}")  # each category's draw is independent of the others
        chosen[category] = set(available if share.count >= len(available) else rng.sample(available, share.count))
    return chosen


def run(input_path: Path, output_path: Path, config: MixConfig, seed: int = 0) -> dict:
    positions: dict[str, list[int]] = {}
    with StepFiles(input_path, output_path, config.on_bad_record) as files:
        for number, sample in files.samples():
            positions.setdefault(sample.get("category", "unknown"), []).append(number)
        chosen = choose(positions, config, seed)
        selected = set().union(*chosen.values()) if chosen else set()
        for number, sample in files.samples():
            if number in selected:
                files.keep(sample)
            else:
                reason = (
                    "over_target" if sample.get("category", "unknown") in config.categories else "category_not_in_mix"
                )
                files.drop(sample, "mix", reason)
        return files.finish(mix_report(positions, chosen, config))


def mix_report(positions: dict[str, list[int]], chosen: dict[str, set[int]], config: MixConfig) -> dict:
    total = sum(len(c) for c in chosen.values())
    counts = {
        "input": sum(len(p) for p in positions.values()),
        "kept": total,
        "by_category": {
            category: {
                "target": share.count,
                "available": len(positions.get(category, [])),
                "selected": len(chosen[category]),
                "short_by": max(share.count - len(positions.get(category, [])), 0),
                "target_ratio": share.ratio,
                "ratio": round(len(chosen[category]) / total, 4) if total else 0.0,
            }
            for category, share in config.categories.items()
        },
        "not_in_mix": {c: len(p) for c, p in positions.items() if c not in config.categories},
    }
    counts["short"] = sorted(c for c, row in counts["by_category"].items() if row["short_by"])
    return counts
