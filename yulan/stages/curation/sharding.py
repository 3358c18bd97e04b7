"""How a step's work splits over array tasks (curation.shards > 1): each task maps one shard of the step's input
(`map_shard`), then one job merges the shards and decides what is kept over the whole file (`merge_shards`).
A sharded step's module defines both, mostly with these helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from yulan.stages.curation.cache import ResultCache, cache_path
from yulan.stages.curation.io import StepFiles, side_file


def run_on_shard(run: Callable) -> Callable:
    """A map that is the step's whole run on one shard; its outputs land beside the shard."""

    def map_shard(shard_input: Path, shards_dir: Path, shard: int, config, seed: int, **needs) -> None:
        run(shard_input, shards_dir / f"{shard}.jsonl", config, seed, **needs)

    return map_shard


def concatenated(
    input_path: Path, output_path: Path, shards_dir: Path, shards: int, config, seed: int, **needs
) -> dict:
    """A merge for steps that decide per sample: the shards' kept and dropped files in order, reports added up."""
    with StepFiles(input_path, output_path, config.on_bad_record) as files:
        for shard in range(shards):
            files.kept.write((shards_dir / f"{shard}.jsonl").read_text(encoding="utf-8"))
            files.dropped.write(side_file(shards_dir / f"{shard}.jsonl", "dropped.jsonl").read_text(encoding="utf-8"))
        return files.finish(
            summed(
                [
                    json.loads(side_file(shards_dir / f"{shard}.jsonl", "report.json").read_text())
                    for shard in range(shards)
                ]
            )
        )


def rerun_from_caches(run: Callable, **final) -> Callable:
    """A merge for steps that decide over the whole file (a percentile, a fraction): the shards' caches joined,
    then the step rerun over the file, which finds every result in the cache. `final`: extra arguments of that
    run (the judge asks no model)."""

    def merge_shards(
        input_path: Path, output_path: Path, shards_dir: Path, shards: int, config, seed: int, **needs
    ) -> dict:
        with ResultCache(cache_path(output_path)) as cache:
            for shard in range(shards):
                if cache_path(shards_dir / f"{shard}.jsonl").exists():
                    cache.merge(cache_path(shards_dir / f"{shard}.jsonl"))
        return run(input_path, output_path, config, seed, **needs, **final)

    return merge_shards


def summed(shard_counts: list[dict]) -> dict:
    """Counts of several shards' reports added up (nested by category and reason)."""
    total: dict = {}
    for counts in shard_counts:
        for key, value in counts.items():
            if isinstance(value, dict):
                total[key] = summed([total.get(key, {}), value])
            elif isinstance(value, (int, float)):
                total[key] = total.get(key, 0) + value
    return total
