"""The data a UI capture takes and gives back: declarative checks in, one result model out."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Language = Literal["tsx", "jsx", "ts", "js", "html"]
LANGUAGES: tuple[str, ...] = ("tsx", "jsx", "ts", "js", "html")
Status = Literal["build_error", "timeout", "error", "failed", "passed"]

ACTIONS = ("click", "fill", "press", "hover", "select", "wait_for")
EXPECTATIONS = ("expect_visible", "expect_hidden", "expect_text", "expect_count", "expect_value", "expect_no_errors")
MAX_CHECK_TIMEOUT_MS = 10_000
DEFAULT_CHECK_TIMEOUT_MS = 2_000

_NEEDS_SELECTOR = {"click", "fill", "hover", "select", "expect_visible", "expect_hidden", "expect_text",
                   "expect_count", "expect_value"}
_NEEDS_VALUE = {"fill", "press", "select", "expect_text", "expect_value"}


class UICheck(BaseModel):
    """One step run against the rendered page, in order: an action, or an expectation (one test each)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["click", "fill", "press", "hover", "select", "wait_for",
                    "expect_visible", "expect_hidden", "expect_text", "expect_count", "expect_value",
                    "expect_no_errors"] = Field(description="What to do or expect.")
    selector: str | None = Field(default=None, max_length=2000, description=(
        "A Playwright selector: CSS, text=..., role=button[name=\"Login\"], or testid=x for [data-testid=x]. "
        "press without a selector presses on the page; wait_for without one waits timeout_ms."))
    value: str | None = Field(default=None, max_length=10_000, description=(
        "fill: the text; press: the key (Enter, Tab, a); select: the option value or label; expect_text: text the "
        "element contains; expect_value: an input's exact value."))
    count: int | None = Field(default=None, ge=0, le=100_000, description="expect_count: how many elements match.")
    timeout_ms: int | None = Field(default=None, ge=1, le=MAX_CHECK_TIMEOUT_MS, description=(
        f"How long the step may wait for its element or condition (default {DEFAULT_CHECK_TIMEOUT_MS})."))

    @model_validator(mode="after")
    def _fields_for_action(self) -> UICheck:
        if self.action in _NEEDS_SELECTOR and not self.selector:
            raise ValueError(f"{self.action} needs a selector")
        if self.action in _NEEDS_VALUE and self.value is None:
            raise ValueError(f"{self.action} needs a value")
        if self.action == "expect_count" and self.count is None:
            raise ValueError("expect_count needs a count")
        if self.action != "expect_count" and self.count is not None:
            raise ValueError(f"count is only for expect_count, not {self.action}")
        if self.action == "wait_for" and not self.selector and self.timeout_ms is None:
            raise ValueError("wait_for needs a selector or a timeout_ms")
        if self.action == "expect_no_errors" and (self.selector or self.value is not None):
            raise ValueError("expect_no_errors takes no selector or value")
        return self

    @property
    def is_expectation(self) -> bool:
        return self.action.startswith("expect_")

    def describe(self) -> str:
        parts = [self.action]
        if self.selector:
            parts.append(repr(self.selector))
        if self.value is not None:
            parts.append(f"value={self.value!r}")
        if self.count is not None:
            parts.append(f"count={self.count}")
        return " ".join(parts)


class BuildMessage(BaseModel):
    """An esbuild error or warning; line and column are 1-based, in the file named."""

    file: str | None = None
    line: int | None = None
    column: int | None = None
    text: str
    line_text: str | None = None


class SourceLocation(BaseModel):
    """Where in the source something happened: the component's own line when the source map says so."""

    file: str
    line: int | None = None
    column: int | None = None


class ConsoleMessage(BaseModel):
    level: str = Field(description="log, info, warn, error or debug")
    text: str
    location: SourceLocation | None = None


class PageError(BaseModel):
    """An uncaught error, an unhandled rejection, or an error React caught while rendering the component."""

    kind: Literal["error", "unhandledrejection", "render"]
    message: str
    stack: str = Field(default="", description="With component frames mapped back to the source.")
    component_stack: str = ""
    location: SourceLocation | None = None


class FailedResponse(BaseModel):
    url: str
    status: int | None = Field(default=None, description="HTTP status (>= 400), or None when the request failed.")
    error: str | None = None


class CheckResult(BaseModel):
    index: int
    action: str
    selector: str | None = None
    is_test: bool = Field(description="Expectations count as tests; actions do not.")
    passed: bool
    message: str = ""
    duration_ms: float = 0.0


class Screenshot(BaseModel):
    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    at_ms: int = Field(description="Milliseconds after the page settled.")
    png: bytes = Field(repr=False)
    width: int
    height: int


class UITimings(BaseModel):
    build_ms: float = 0.0
    tailwind_ms: float = 0.0
    render_ms: float = 0.0
    checks_ms: float = 0.0


class UICaptureResult(BaseModel):
    """Everything one capture learned; `status` summarises it by the rules in `capture.status_of`."""

    status: Status
    language: Language
    compiled: bool
    build_errors: list[BuildMessage] = Field(default_factory=list)
    build_warnings: list[BuildMessage] = Field(default_factory=list)
    console: list[ConsoleMessage] = Field(default_factory=list)
    page_errors: list[PageError] = Field(default_factory=list)
    failed_responses: list[FailedResponse] = Field(default_factory=list)
    blocked_requests: list[str] = Field(default_factory=list, description="URLs the page tried to reach off its origin.")
    aria_snapshot: str = ""
    visible_text: str = ""
    screenshots: list[Screenshot] = Field(default_factory=list)
    blank: bool = False
    checks: list[CheckResult] = Field(default_factory=list)
    tests_passed: int = 0
    tests_total: int = 0
    duration_ms: float = 0.0
    timings: UITimings = Field(default_factory=UITimings)
    isolation: str = Field(default="", description="bwrap (own namespaces, no network, uid 65534) or process.")
    notes: list[str] = Field(default_factory=list, description="What was truncated or recovered (a browser restart).")

    @property
    def console_errors(self) -> list[ConsoleMessage]:
        return [m for m in self.console if m.level == "error"]
