"""SFT data curation (report §3): sources, de-duplication, heuristic filters, LLM judge, complexity, mix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import computed_field, model_validator

from yulan.schema.common import (
    CONTINUATION_WORDS,
    CONTINUATION_WORDS_DESCRIPTION,
    SENTENCE_END_MARKS,
    SENTENCE_END_MARKS_DESCRIPTION,
    UNFINISHED_MIN_WORDS,
    UNFINISHED_MIN_WORDS_DESCRIPTION,
    BadRecordPolicy,
    Resources,
    Share,
    check_shares,
    cpu_job,
)
from yulan.schema.fields import Section, chosen, paper, rule_error
from yulan.schema.ppo import PromptSet

SynthesisJob = Literal["math", "science", "chinese_commonsense"]
HeuristicRule = Literal[
    "punctuation_run",
    "repeated_span",
    "garbled",
    "long_word",
    "non_alnum",
    "repetition",
    "length",
    "truncated",
    "ai_identity",
    "structure",
]


ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ServerClient(Section):
    """How a job talks to an OpenAI-compatible server (a hosted API, or `vllm serve`)."""

    api_key_env: str | None = chosen(
        None,
        pattern=ENV_NAME,
        description="Name of the environment variable holding the API key, sent as a bearer token (e.g. "
        "OPENAI_API_KEY); "
        "the key itself never enters a config. None = no Authorization header (a vLLM server started in the job).",
    )
    concurrency: int = chosen(16, ge=1, description="Requests in flight at once (and connections kept open).")
    max_retries: int = chosen(
        3,
        ge=0,
        description="Retries of a failed request (connection errors, timeouts, 408/409/429/5xx), after "
        "the server's Retry-After or an exponential backoff with jitter.",
    )
    timeout_s: float = chosen(300.0, gt=0.0, unit="seconds", description="Time limit of one request.")


class ServedModelJob(ServerClient):
    """A job asking a model through an OpenAI-compatible server: the configured one, or vLLM started in the job."""

    endpoint: str | None = chosen(
        None,
        description="Base URL of a running OpenAI-compatible server; None = start vLLM with the model inside the job.",
    )
    max_seeds: int | None = chosen(
        None, ge=1, description="Use only the first N seed questions or documents (None = all)."
    )
    temperature: float = chosen(0.7, ge=0.0, description="Sampling temperature (diverse but mostly correct).")
    max_new_tokens: int = chosen(2048, ge=1, description="Longest model reply.", unit="tokens")


class MathSynthesis(ServedModelJob):
    teacher: str = paper(
        "Qwen/Qwen2.5-Math-7B-Instruct",
        where="§3 synthetic data, Mathematics",
        description="Teacher model distilled from.",
    )
    seed_dataset: str = paper(
        "nvidia/OpenMathInstruct-2", where="§3 synthetic data, Mathematics", description="Questions distilled from."
    )
    difficulty_levels: tuple[str, ...] = paper(
        ("easy", "medium", "hard"),
        where="§3 synthetic data, Mathematics: 'questions of varying difficulty levels'",
        description="Difficulty strata sampled from the seed dataset (the level names are ours).",
    )
    match_ground_truth: bool = paper(
        True,
        where="§3 synthetic data, Mathematics: 'each distilled response is matched to the ground truth'",
        description="Keep a distilled response only when its final answer equals the dataset's answer.",
    )
    samples_per_question: int = chosen(
        4, ge=1, description="Teacher samples per question; more samples rescue hard questions."
    )


class ScienceSynthesis(ServedModelJob):
    generator: str = paper(
        "Qwen/Qwen2.5-32B-Instruct",
        where="§3 synthetic data, Science",
        description="Model extracting questions and writing answers.",
    )
    corpora: tuple[str, ...] = paper(
        ("wiki", "reddit", "arxiv"),
        where="§3 synthetic data, Science",
        description="Text sources questions are extracted from.",
    )
    documents: tuple[str, ...] = chosen(
        (), description="Local JSONL/Parquet files of those texts (`text`, optional `source`); required to run."
    )
    fields: tuple[str, ...] = paper(
        ("physics", "chemistry", "biology", "psychology"),
        where="§3 synthetic data, Science",
        description="Scientific fields kept after topic classification.",
    )
    reclassify_with_topic_classifier: bool = paper(
        True,
        where="§3 synthetic data, Science",
        description="Re-assign each pair to a field and drop those outside `fields`.",
    )
    topic_classifier: str = chosen(
        "Qwen/Qwen2.5-32B-Instruct",
        description="The report does not name its topic classifier; the generator classifies zero-shot.",
    )
    pairs_per_document: int = chosen(3, ge=1, description="Question-answer pairs extracted per text at most.")

    @model_validator(mode="after")
    def _classifier_served(self) -> ScienceSynthesis:
        if self.reclassify_with_topic_classifier and self.endpoint is None and self.topic_classifier != self.generator:
            raise rule_error(
                "topic_classifier",
                self.topic_classifier,
                f"without an endpoint the job serves only the generator ({self.generator}); a classifier it does not "
                "serve would answer every pair with an error",
                "set topic_classifier to the generator, or endpoint= a server that serves both",
            )
        return self


class ChineseCommonsenseSynthesis(ServedModelJob):
    sources: tuple[str, ...] = paper(
        ("baidu_baike", "wildchat", "smoltalk-chinese"),
        where="§3 synthetic data, Chinese commonsense reasoning",
        description="Encyclopedia and real-user sources.",
    )
    documents: tuple[str, ...] = chosen(
        (),
        description=(
            "Local JSONL/Parquet files of those documents (`text`, optional `title` = the entry's "
            "entity); required to run."
        ),
    )
    generator: str = chosen(
        "Qwen/Qwen2.5-32B-Instruct", description="The report does not name it; the model it uses for the other jobs."
    )
    relevance_filters: tuple[Literal["tfidf", "keywords"], ...] = paper(
        ("tfidf", "keywords"),
        where="§3 synthetic data, Chinese commonsense reasoning: 'Using TF-IDF and keyword matching'",
        description="How relevant content is identified; a document must pass every listed filter.",
    )
    keywords: tuple[str, ...] = chosen(
        (
            "历史",
            "地理",
            "文化",
            "传统",
            "节日",
            "习俗",
            "成语",
            "诗",
            "朝代",
            "民俗",
            "饮食",
            "中医",
            "汉字",
            "节气",
            "名胜",
        ),
        description="Commonsense topics a relevant document mentions (the report does not list its keywords).",
    )
    min_tfidf_score: float = chosen(
        0.05, ge=0.0, le=1.0, description="Documents whose TF-IDF cosine with the keywords is below this are skipped."
    )
    qa_pairs_per_document: int = chosen(
        3, ge=1, description="'multiple question-answer pairs for knowledge-dense documents': how many."
    )
    topic_classifier: str = paper(
        "cmmlu",
        where="§3: 'we employ the CMMLU classifier for topic categorization'",
        description="Topic labels: CMMLU's five categories, assigned zero-shot by the generator.",
    )
    llm_quality_check: bool = paper(
        True, where="§3: 'LLM-based evaluation to assess response quality'", description="Judge each answer."
    )
    min_quality: int = chosen(
        3, ge=1, le=5, description="Answers the quality check scores below this (1–5) are dropped."
    )
    entity_cross_reference: bool = paper(
        True,
        where="§3: 'cross-reference entity-based queries with encyclopedia entries'",
        description="Check entity questions against the encyclopedia to prevent hallucination.",
    )
    consistent_answer_mapping: bool = paper(
        True,
        where="§3: 'maintain a mapping list for consistent answers to similar questions'",
        description="Give similar questions the same answer.",
    )


class Sources(Section):
    open_source: tuple[str, ...] = chosen(
        (),
        description="Public instruction datasets (JSONL/Parquet paths or hub ids). The report names none.",
    )
    synthesis: tuple[SynthesisJob, ...] = paper(
        ("math", "science", "chinese_commonsense"),
        where="§3 synthetic data",
        description="Synthetic-data jobs to run before filtering.",
    )
    math: MathSynthesis = paper(default_factory=MathSynthesis, where="§3", description="Math distillation.")
    science: ScienceSynthesis = paper(
        default_factory=ScienceSynthesis, where="§3", description="Science QA extraction."
    )
    chinese_commonsense: ChineseCommonsenseSynthesis = paper(
        default_factory=ChineseCommonsenseSynthesis, where="§3", description="Chinese commonsense QA."
    )


class StepSettings(Section):
    """What every curation step has."""

    on_bad_record: BadRecordPolicy | None = chosen(
        None,
        description="A record that cannot be used: stop the step naming FILE:LINE (nothing is written), or skip it "
        "into the step's .bad.jsonl with its line and reason; None = curation.on_bad_record (stop outside a pipeline).",
    )


class DedupConfig(StepSettings):
    method: Literal["minhash_lsh"] = paper(
        "minhash_lsh", where="§3 data filtering, De-duplication", description="Near-duplicate detection algorithm."
    )
    exact: bool = chosen(
        True, description="Also drop identical samples (after whitespace normalisation); cheap and exact."
    )
    threshold: float = chosen(
        0.8, gt=0.0, le=1.0, description="Jaccard similarity at or above which two samples are duplicates."
    )
    num_permutations: int = chosen(128, ge=16, description="MinHash signature length.")
    bands: int = chosen(20, ge=1, description="LSH bands; 20x6 is recall-heavy, then candidates are verified.")
    rows_per_band: int = chosen(6, ge=1, description="Signature rows per LSH band.")
    verify_candidates: bool = chosen(
        True, description="Keep an LSH candidate pair only if its estimated Jaccard reaches the threshold (precision)."
    )
    word_ngram: int = chosen(5, ge=1, description="Shingle size for space-separated text (words).", unit="words")
    char_ngram: int = chosen(5, ge=1, description="Shingle size for Chinese text (characters).", unit="characters")
    strip_shared_prompts: bool = chosen(
        True, description="Ignore system prompts shared by many samples; otherwise unrelated samples look alike."
    )
    keep: Literal["earliest"] = chosen("earliest", description="Which sample of a duplicate cluster survives.")
    workers: int = chosen(0, ge=0, description="Processes to hash with (0 = one per CPU this process may use).")

    @computed_field(description="Jaccard at which a pair becomes an LSH candidate with probability ~1/2: (1/b)^(1/r).")  # type: ignore[prop-decorator]
    @property
    def lsh_midpoint(self) -> float:
        return round(float((1.0 / self.bands) ** (1.0 / self.rows_per_band)), 4)

    @model_validator(mode="after")
    def _bands_fit_signature(self) -> DedupConfig:
        if self.bands * self.rows_per_band > self.num_permutations:
            raise rule_error(
                "bands",
                self.bands,
                (
                    f"bands x rows_per_band = {self.bands * self.rows_per_band} exceeds num_permutations = "
                    f"{self.num_permutations}"
                ),
                "lower bands or rows_per_band, or raise num_permutations",
            )
        return self


class HeuristicsConfig(StepSettings):
    """Rule-based filters (report: 'repeated punctuation or excessive garbled text'), mostly on responses."""

    max_punctuation_run: int = chosen(
        4, ge=2, description="Drop when one punctuation mark repeats this many times in a row."
    )
    punctuation_run_exempt: str = chosen(
        "-=*#_~`|.·", description="Marks that legitimately repeat (Markdown rules, tables, ellipses)."
    )
    repeated_span_min_chars: int = chosen(8, ge=2, description="Shortest span checked for back-to-back repetition.")
    max_span_repeats: int = chosen(3, ge=2, description="Drop when a span repeats back to back this many times.")
    max_replacement_chars: int = chosen(0, ge=0, description="U+FFFD characters allowed (garbled decoding).")
    max_control_chars: int = chosen(0, ge=0, description="Control characters allowed (other than tab/newline).")
    drop_mojibake: bool = chosen(True, description="Drop UTF-8-read-as-Latin-1 sequences such as 'Ã©' or 'â€™'.")
    max_word_chars: int = chosen(
        200, ge=10, description="Longest non-CJK 'word' (base64 blobs, minified code).", unit="characters"
    )
    max_non_alnum_fraction: float = chosen(
        0.5, gt=0.0, le=1.0, description="Highest share of non-alphanumeric characters."
    )
    max_dup_line_fraction: float = chosen(0.30, gt=0.0, le=1.0, description="Gopher: duplicated lines / lines.")
    max_dup_line_char_fraction: float = chosen(
        0.20, gt=0.0, le=1.0, description="Gopher: chars in duplicated lines / chars."
    )
    max_dup_paragraph_fraction: float = chosen(
        0.30, gt=0.0, le=1.0, description="Gopher: duplicated paragraphs / paragraphs."
    )
    max_dup_paragraph_char_fraction: float = chosen(
        0.20, gt=0.0, le=1.0, description="Gopher: chars in duplicated paragraphs / chars."
    )
    max_top_ngram_char_fraction: tuple[float, float, float] = chosen(
        (0.20, 0.18, 0.16), description="Gopher: share of chars in the most frequent 2-, 3-, 4-gram."
    )
    max_dup_ngram_char_fraction: tuple[float, float, float, float, float, float] = chosen(
        (0.15, 0.14, 0.13, 0.12, 0.11, 0.10), description="Gopher: share of chars in duplicated 5- ... 10-grams."
    )
    min_response_chars: int = chosen(
        1, ge=0, description="Shortest response kept (short answers are fine).", unit="characters"
    )
    max_response_chars: int = chosen(100_000, ge=1, description="Longest response kept.", unit="characters")
    max_instruction_chars: int = chosen(50_000, ge=1, description="Longest instruction kept.", unit="characters")
    sentence_end_marks: str = chosen(SENTENCE_END_MARKS, description=SENTENCE_END_MARKS_DESCRIPTION)
    continuation_words: tuple[str, ...] = chosen(CONTINUATION_WORDS, description=CONTINUATION_WORDS_DESCRIPTION)
    unfinished_min_words: int = chosen(UNFINISHED_MIN_WORDS, ge=1, description=UNFINISHED_MIN_WORDS_DESCRIPTION)
    ai_identity_patterns: tuple[str, ...] = chosen(
        ("As an AI language model", "I am ChatGPT", "developed by OpenAI", "作为一个人工智能语言模型", "我是ChatGPT"),
        description="Boilerplate that would teach the model a wrong identity.",
    )
    rules_off: dict[str, tuple[HeuristicRule, ...]] = chosen(
        default_factory=lambda: {
            "code": ("punctuation_run", "long_word", "non_alnum", "repetition"),
            "math": ("punctuation_run", "non_alnum"),
        },
        description="Per category, the rules that would destroy good samples of that kind.",
    )

    @model_validator(mode="after")
    def _response_bounds(self) -> HeuristicsConfig:
        if self.min_response_chars > self.max_response_chars:
            raise rule_error(
                "min_response_chars",
                self.min_response_chars,
                f"must not exceed max_response_chars = {self.max_response_chars}",
                "lower min_response_chars or raise max_response_chars",
            )
        return self


class JudgeConfig(StepSettings, ServerClient):
    model: str = paper("Qwen/Qwen2.5-32B-Instruct", where="§3 quality-based scoring", description="Judge model.")
    dimensions: tuple[str, ...] = paper(
        ("instruction_following", "informativeness", "truthfulness"),
        where="§3 quality-based scoring",
        description="Dimensions scored separately.",
    )
    score_min: int = paper(
        1, where="§3 quality-based scoring: 'scores ranging from 1 to 5'", description="Lowest score."
    )
    score_max: int = paper(
        5, where="§3 quality-based scoring: 'scores ranging from 1 to 5'", description="Highest score."
    )
    aggregate: Literal["mean"] = paper(
        "mean",
        where="§3: 'the average score across these three dimensions'",
        description="How dimension scores combine.",
    )
    discard_lower_percentile: float = chosen(
        10.0, ge=0.0, lt=100.0, unit="percent", description="Samples below this percentile of the average are dropped."
    )
    backend: Literal["vllm", "openai"] = chosen("vllm", description="vLLM in the job, or any OpenAI-compatible server.")
    endpoint: str | None = chosen(None, description="Base URL of the OpenAI-compatible server (backend=openai).")
    temperature: float = chosen(0.0, ge=0.0, description="Greedy judging is reproducible.")
    retry_temperature: float = chosen(
        0.7,
        gt=0.0,
        description="Temperature of a request asked again after an unusable reply (each retry with its own seed): "
        "asked greedily again, the judge would give the same reply.",
    )
    max_new_tokens: int = chosen(512, ge=1, description="Judge output budget.", unit="tokens")
    structured_output: bool = chosen(
        True,
        description="Ask the server for a JSON object of the dimensions' integer scores (response_format "
        "json_schema, which vLLM and hosted APIs honour); replies are parsed leniently either way.",
    )
    cache: bool = chosen(True, description="Cache judgements by content hash so reruns cost nothing.")

    @model_validator(mode="after")
    def _score_range(self) -> JudgeConfig:
        if self.score_min >= self.score_max:
            raise rule_error(
                "score_min", self.score_min, f"must be below score_max = {self.score_max}", "set score_min < score_max"
            )
        if self.backend == "openai" and not self.endpoint:
            raise rule_error(
                "endpoint",
                None,
                "backend=openai needs the server's URL",
                "set curation.judge.endpoint=http://HOST:PORT/v1",
            )
        return self


class ComplexityConfig(StepSettings):
    """Comp(x, y) = λ1·L_length + λ2·Loss_it(x, y); the hardest fraction is dropped."""

    length_weight: float = chosen(
        0.01, ge=0.0, unit="per instruction token", description="λ1: weight of the instruction length."
    )
    loss_weight: float = chosen(
        1.0, ge=0.0, unit="per nat", description="λ2: weight of the response loss under the base model."
    )
    loss_reduction: Literal["sum", "mean"] = paper(
        "sum",
        where="§3 complexity: Loss_it sums over the response tokens",
        description=(
            "How token losses combine (the report's formula sums log-probabilities; we use their negation, the NLL)."
        ),
    )
    discard_hardest_fraction: float = chosen(
        0.05, ge=0.0, lt=1.0, description="Share of the most complex samples dropped."
    )
    max_length: int = chosen(4096, ge=16, description="Sequences are truncated to this for scoring.", unit="tokens")
    batch_tokens: int = chosen(16_384, ge=256, description="Tokens per scoring batch.", unit="tokens")


class MixConfig(StepSettings):
    categories: dict[str, Share] = paper(
        default_factory=lambda: {
            "general_en": Share(count=3_200_000, ratio=0.39),
            "general_zh": Share(count=3_000_000, ratio=0.36),
            "math": Share(count=1_800_000, ratio=0.22),
            "code": Share(count=200_000, ratio=0.03),
        },
        where="§3 data mix table",
        description="Target samples per category and their share of the SFT data.",
    )
    ratio_tolerance: float = chosen(
        0.01,
        ge=0.0,
        le=0.1,
        description="The report rounds ratios to whole percents (0.2M/8.2M = 2.4% is listed as 3%).",
    )

    @computed_field(description="Samples in the SFT mix (report: 8.2M).")  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return sum(share.count for share in self.categories.values())

    @model_validator(mode="after")
    def _shares_agree(self) -> MixConfig:
        check_shares(self.categories, self.ratio_tolerance, "categories")
        return self


class DecontaminationConfig(StepSettings):
    """Samples sharing long n-grams with an evaluation item are removed (as GPT-3 and Tülu 3 do; not in the report)."""

    ngram: int = chosen(
        13, ge=4, description="N-gram length (GPT-3's and Tülu 3's 13 words; characters for Chinese).", unit="words"
    )
    threshold: float = chosen(
        0.5,
        gt=0.0,
        le=1.0,
        description="A sample matches an item's question or answer when it contains at least this share of its "
        "n-grams (an item shorter than ngram matches when it appears whole).",
    )
    benchmarks: Literal["eval_table", "none"] = chosen(
        "eval_table", description="Check against every row of the evaluation table whose data is available locally."
    )
    files: tuple[str, ...] = chosen(
        (), description="Further JSONL/Parquet files of items to check against (every string field is an item text)."
    )
    action: Literal["drop", "flag"] = chosen(
        "drop", description="drop contaminated samples, or keep them with a `contamination` field naming the matches."
    )
    examples: int = chosen(3, ge=0, description="Matches quoted per benchmark in the report.")


@dataclass(frozen=True)
class Step:
    """One curation step: everything the stage, `yulan curate` and validation need to know about it. Its module
    has `run(input_path, output_path, settings, seed, **needs) -> counts`, and, if it shards, `map_shard` and
    `merge_shards`."""

    name: str
    settings: type[Section]
    section: str  # where its settings live in an experiment
    module: str
    pipeline: bool = True  # False: only standalone (`yulan curate`)
    sharded: bool = False  # its per-sample work splits over array tasks (curation.shards > 1)
    model: Literal["base", "served"] | None = None  # scores with the base model, or asks a served one
    reads_eval_table: bool = False


STEPS: dict[str, Step] = {
    step.name: step
    for step in (
        Step("dedup", DedupConfig, "curation.dedup", "yulan.stages.curation.dedup", sharded=True),
        Step(
            "decontaminate",
            DecontaminationConfig,
            "curation.decontaminate",
            "yulan.stages.curation.decontaminate",
            reads_eval_table=True,
        ),
        Step("heuristics", HeuristicsConfig, "curation.heuristics", "yulan.stages.curation.heuristics", sharded=True),
        Step("judge", JudgeConfig, "curation.judge", "yulan.stages.curation.judge", sharded=True, model="served"),
        Step(
            "complexity",
            ComplexityConfig,
            "curation.complexity",
            "yulan.stages.curation.complexity",
            sharded=True,
            model="base",
        ),
        Step("mix", MixConfig, "curation.mix", "yulan.stages.curation.mix"),
        # In a pipeline the PPO job selects its prompts itself.
        Step(
            "ppo_prompts", PromptSet, "ppo.prompts", "yulan.stages.ppo_prompts", pipeline=False, reads_eval_table=True
        ),
    )
}
PIPELINE_STEPS = tuple(name for name, step in STEPS.items() if step.pipeline)  # in the order they run
CurationStep = Literal[PIPELINE_STEPS]  # type: ignore[valid-type]


class CurationConfig(Section):
    inputs: tuple[str, ...] = chosen(
        (), description="Raw sample files (JSONL or Parquet) to curate, besides synthesis output."
    )
    steps: tuple[CurationStep, ...] = chosen(
        PIPELINE_STEPS,
        description="Steps to run, in this order: the report's (§3 data filtering and data mix), with decontamination "
        "against the evaluation table (ours) after de-duplication.",
    )
    on_bad_record: BadRecordPolicy = chosen(
        "stop",
        description="A record that cannot be used stops the step naming FILE:LINE, or (skip) is set aside "
        "with its reason into the step's .bad.jsonl; each step's on_bad_record overrides this.",
    )
    sources: Sources = paper(default_factory=Sources, where="§3 data source", description="Where SFT data comes from.")
    dedup: DedupConfig = paper(default_factory=DedupConfig, where="§3", description="MinHash + LSH de-duplication.")
    decontaminate: DecontaminationConfig = chosen(
        default_factory=DecontaminationConfig, description="N-gram decontamination against the evaluation table."
    )
    heuristics: HeuristicsConfig = paper(default_factory=HeuristicsConfig, where="§3", description="Heuristic filters.")
    judge: JudgeConfig = paper(default_factory=JudgeConfig, where="§3", description="LLM-as-a-judge scoring.")
    complexity: ComplexityConfig = paper(
        default_factory=ComplexityConfig, where="§3", description="Complexity selection."
    )
    mix: MixConfig = paper(default_factory=MixConfig, where="§3", description="Category mix.")
    shards: int = chosen(
        1,
        ge=1,
        le=10_000,
        description="Array tasks each step's per-sample work is split over (dedup fingerprints, heuristics, judge, "
        "complexity); 1 = the whole stage in one job. The judge's shards run on model_resources, each with its server.",
    )
    resources: Resources = chosen(default_factory=lambda: cpu_job(cpus=16, hours=12), description="CPU steps' job.")
    model_resources: Resources = chosen(
        default_factory=lambda: Resources(
            partition="gpu", nodes=1, gpus_per_node=8, cpus_per_node=64, time_limit_minutes=24 * 60
        ),
        description="Jobs that run models: judge, complexity and synthesis (GPU on clusters).",
    )

    @model_validator(mode="after")
    def _steps_in_order(self) -> CurationConfig:
        order = [PIPELINE_STEPS.index(step) for step in self.steps]
        if order != sorted(set(order)):
            raise rule_error(
                "steps",
                list(self.steps),
                f"steps run once each, in the order {list(PIPELINE_STEPS)}",
                "list each step once, in that order",
            )
        if self.shards > 1 and "judge" in self.steps and not self.judge.cache:
            raise rule_error(
                "shards",
                self.shards,
                "sharded judging hands its judgements to the merge through the cache",
                "set curation.judge.cache=true, or curation.shards=1",
            )
        return self


def curation_parts(config: CurationConfig) -> list[tuple[str, bool, bool]]:
    """The curation stage as several jobs (`curation.shards` > 1), in order: (part, an array over the shards?,
    runs a model?). `prepare` runs the synthesis jobs and joins the inputs; `STEP-map` does a step's per-sample
    work on one shard; `STEP` merges the shards and decides what is kept."""
    out = [("prepare", False, bool(config.sources.synthesis))]
    for name in config.steps:
        if STEPS[name].sharded:
            out.append((f"{name}-map", True, STEPS[name].model is not None))
        out.append((name, False, False))
    return out
