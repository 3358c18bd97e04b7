"""Curation steps. Each is a module with `run(input_path, output_path, config, seed, **extra) -> report`, usable
standalone (`yulan curate STEP`) and chained by the curation stage (yulan.curation.stage)."""

# step -> (module, settings class as "schema module.Class" or a class of schema.curation, field of CurationConfig
# holding its settings in the curation stage)
STEPS = {
    "dedup": ("yulan.curation.dedup", "DedupConfig", "dedup"),
    "heuristics": ("yulan.curation.heuristics", "HeuristicsConfig", "heuristics"),
    "judge": ("yulan.curation.judge", "JudgeConfig", "judge"),
    "complexity": ("yulan.curation.complexity", "ComplexityConfig", "complexity"),
    "mix": ("yulan.curation.mix", "MixConfig", "mix"),
}
# Standalone only (`yulan curate`): in a pipeline, the PPO job selects its prompts itself.
STANDALONE = {"ppo_prompts": ("yulan.curation.ppo_prompts", "ppo.PromptSet", None)}

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
