"""What `yulan show` and `launch.py --cfg job` print: the effective settings of the stages an experiment runs."""

from __future__ import annotations

import json

from yulan.compose import Composed, default_at, flatten
from yulan.schema.common import STAGES
from yulan.schema.experiment import Experiment

REWARD_MODEL_STAGES = ("preference", "ppo")  # the stages that score with the reward model


def unused_sections(experiment: Experiment) -> list[str]:
    """Top-level sections no stage of this experiment reads."""
    unused = [stage for stage in STAGES if stage not in experiment.stages]
    if not set(REWARD_MODEL_STAGES) & set(experiment.stages):
        unused.append("reward_model")
    return unused


def render(
    composed: Composed,
    experiment: Experiment,
    *,
    everything: bool = False,
    as_json: bool = False,
    sources: bool = False,
) -> str:
    """YAML (or JSON, or one `path = value    # origin` line per setting) of the experiment; the sections of stages it
    does not run are left out unless `everything`."""
    import yaml

    data = experiment.model_dump(mode="json")
    hidden = [] if everything else unused_sections(experiment)
    data = {key: value for key, value in data.items() if key not in hidden}
    if as_json:
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if sources:
        lines = []
        for path, value in flatten(data).items():
            origin = composed.source_of(path) or (
                "derived" if default_at(path) is None and value is not None else "schema default"
            )
            lines.append(f"{path} = {json.dumps(value, ensure_ascii=False)}    # {origin}")
        text = "\n".join(lines) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if hidden:
        text += f"# not shown: {', '.join(hidden)} (not read by the stages this experiment runs; --all shows them)\n"
    return text
