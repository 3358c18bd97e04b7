"""Curation steps (yulan.schema.curation.STEPS lists them). Each is a module with `run(input_path, output_path,
settings, seed, **needs) -> report`, usable standalone (`yulan curate STEP`) and chained by the curation stage
(yulan.stages.curation.stage); a sharded step's module also has `map_shard` and `merge_shards`
(yulan.stages.curation.sharding)."""

from yulan.schema.curation import STEPS


def parts(config) -> list[tuple[str, bool, bool]]:
    """The curation stage as several jobs (`curation.shards` > 1), in order: (part, an array over the shards?,
    runs a model?). `prepare` runs the synthesis jobs and joins the inputs; `STEP-map` does a step's per-sample
    work on one shard; `STEP` merges the shards and decides what is kept."""
    out = [("prepare", False, bool(config.sources.synthesis))]
    for name in config.steps:
        if STEPS[name].sharded:
            out.append((f"{name}-map", True, STEPS[name].model is not None))
        out.append((name, False, False))
    return out
