"""Curation steps. Each is a module with `run(input_path, output_path, config, seed, **extra) -> report`, usable
standalone (`yulan curate STEP`) and chained by the curation stage (yulan.curation.stage)."""

# step -> (module, settings class in schema.curation, field of CurationConfig holding its settings)
STEPS = {
    "dedup": ("yulan.curation.dedup", "DedupConfig", "dedup"),
    "heuristics": ("yulan.curation.heuristics", "HeuristicsConfig", "heuristics"),
    "judge": ("yulan.curation.judge", "JudgeConfig", "judge"),
    "complexity": ("yulan.curation.complexity", "ComplexityConfig", "complexity"),
    "mix": ("yulan.curation.mix", "MixConfig", "mix"),
}

# Steps whose per-sample work splits over array tasks (`curation.shards` > 1); `mix` samples globally.
SHARDED_STEPS = ("dedup", "heuristics", "judge", "complexity")
MODEL_STEPS = ("judge", "complexity")


def parts(config) -> list[tuple[str, bool, bool]]:
    """The curation stage as several jobs (`curation.shards` > 1), in order: (part, an array over the shards?,
    runs a model?). `prepare` runs the synthesis jobs and joins the inputs; `STEP-map` does a step's per-sample
    work on one shard; `STEP` merges the shards and decides what is kept."""
    out = [("prepare", False, bool(config.sources.synthesis))]
    for step in config.steps:
        if step in SHARDED_STEPS:
            out.append((f"{step}-map", True, step in MODEL_STEPS))
        out.append((step, False, False))
    return out
