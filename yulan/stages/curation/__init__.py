"""Curation steps (yulan.schema.curation.STEPS lists them). Each is a module with `run(input_path, output_path,
settings, seed, **needs) -> counts`, usable standalone (`yulan curate STEP`) and chained by the curation stage
(yulan.stages.curation.stage); a sharded step's module also has `map_shard` and `merge_shards`
(yulan.stages.curation.sharding). The stage's split into jobs is planned from yulan.schema.curation.curation_parts."""
