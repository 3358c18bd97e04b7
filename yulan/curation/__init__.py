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
