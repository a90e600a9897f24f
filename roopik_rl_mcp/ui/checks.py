"""ui_checks: declarative steps run in order against the rendered page with Playwright locators.

Each expectation is one test. An action that cannot be done (no such element, not editable, strict-mode
ambiguity) fails every expectation after it, with a message naming that action: they were never run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.ui.models import DEFAULT_CHECK_TIMEOUT_MS, CheckResult, UICheck

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

    from roopik_rl_mcp.ui.page import RenderOutcome

MAX_CHECKS = 100
MAX_MESSAGE = 600


def parse_ui_checks(raw: Iterable[UICheck | dict[str, Any]] | None) -> list[UICheck]:
    """Validated checks, or UserError naming the step and field: `ui_checks[2].value: fill needs a value`."""
    if raw is None:
        return []
    if isinstance(raw, (str, bytes, dict)):
        raise UserError("ui_checks", "expected a list of steps like {\"action\": \"click\", \"selector\": \"text=Login\"}")
    steps = list(raw)
    if len(steps) > MAX_CHECKS:
        raise UserError("ui_checks", f"at most {MAX_CHECKS} steps, got {len(steps)}")
    checks: list[UICheck] = []
    for index, step in enumerate(steps):
        if isinstance(step, UICheck):
            checks.append(step)
            continue
        if not isinstance(step, dict):
            raise UserError(f"ui_checks[{index}]", f"expected an object with an action, got {type(step).__name__}")
        try:
            checks.append(UICheck.model_validate(step))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            field = f"ui_checks[{index}]" + (f".{where}" if where else "")
            problem = first["msg"].removeprefix("Value error, ")
            if first["type"] == "literal_error" and where == "action":
                problem = f"unknown action {step.get('action')!r}; expected one of {first['ctx']['expected']}"
            raise UserError(field, problem) from None
    return checks


def playwright_selector(selector: str) -> str:
    """Playwright's own selectors, plus `testid=x` / `data-testid=x` for the data-testid attribute."""
    for prefix in ("testid=", "data-testid="):
        if selector.startswith(prefix):
            return f"[data-testid={json.dumps(selector[len(prefix):])}]"
    return selector


def _short(error: BaseException) -> str:
    """Playwright's message without its call log (the first lines say what went wrong)."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    kept: list[str] = []
    for line in lines:
        if line.strip().lower().startswith("call log"):
            break
        kept.append(line.strip())
    text = " ".join(kept) or type(error).__name__
    return text[:MAX_MESSAGE]


async def _act(page: Page, check: UICheck, timeout_ms: float) -> None:
    locator: Locator | None = page.locator(playwright_selector(check.selector)) if check.selector else None
    action = check.action
    if action == "click" and locator is not None:
        await locator.click(timeout=timeout_ms)
    elif action == "fill" and locator is not None:
        await locator.fill(check.value or "", timeout=timeout_ms)
    elif action == "press":
        if locator is not None:
            await locator.press(check.value or "", timeout=timeout_ms)
        else:
            await page.keyboard.press(check.value or "")
    elif action == "hover" and locator is not None:
        await locator.hover(timeout=timeout_ms)
    elif action == "select" and locator is not None:
        await locator.select_option(check.value, timeout=timeout_ms)
    elif action == "wait_for":
        if locator is not None:
            await locator.wait_for(state="visible", timeout=timeout_ms)
        else:
            await asyncio.sleep(timeout_ms / 1000)
    else:
        raise ValueError(f"{action} is not an action")


async def _expect(page: Page, check: UICheck, timeout_ms: float, outcome: RenderOutcome) -> str:
    """'' when the expectation holds, else why not."""
    from playwright.async_api import expect

    if check.action == "expect_no_errors":
        errors = [f"{e.kind}: {e.data.get('message', '')}" for e in outcome.errors()]
        errors += [f"console.error: {e.data.get('text', '')}" for e in outcome.console_errors()]
        if errors:
            return f"{len(errors)} error(s) so far: " + "; ".join(errors[:3])[:MAX_MESSAGE]
        return ""
    locator = page.locator(playwright_selector(check.selector or ""))
    if check.action == "expect_visible":
        await expect(locator).to_be_visible(timeout=timeout_ms)
    elif check.action == "expect_hidden":
        await expect(locator).to_be_hidden(timeout=timeout_ms)
    elif check.action == "expect_text":
        await expect(locator).to_contain_text(check.value or "", timeout=timeout_ms)
    elif check.action == "expect_count":
        await expect(locator).to_have_count(check.count or 0, timeout=timeout_ms)
    elif check.action == "expect_value":
        await expect(locator).to_have_value(check.value or "", timeout=timeout_ms)
    return ""


async def run_checks(page: Page, checks: Sequence[UICheck], outcome: RenderOutcome, deadline: float) -> list[CheckResult]:
    """Run `checks` in order until `deadline` (time.perf_counter()); every step gets a result."""
    from playwright.async_api import Error as PlaywrightError

    results: list[CheckResult] = []
    blocked_by = ""
    for index, check in enumerate(checks):
        result = CheckResult(index=index, action=check.action, selector=check.selector,
                             is_test=check.is_expectation, passed=False)
        results.append(result)
        if blocked_by:
            result.message = f"not run: {blocked_by}"
            continue
        remaining_ms = (deadline - time.perf_counter()) * 1000
        if remaining_ms <= 0:
            result.message = "not run: the capture's timeout was reached"
            blocked_by = "the capture's timeout was reached"
            continue
        timeout_ms = max(1.0, min(float(check.timeout_ms or DEFAULT_CHECK_TIMEOUT_MS), remaining_ms))
        started = time.perf_counter()
        try:
            if check.is_expectation:
                result.message = await _expect(page, check, timeout_ms, outcome)
            else:
                await _act(page, check, timeout_ms)
            result.passed = not result.message
        except (PlaywrightError, AssertionError) as error:
            result.message = _short(error)
            if not check.is_expectation:
                blocked_by = f"step {index} ({check.describe()}) failed: {result.message}"
        result.duration_ms = (time.perf_counter() - started) * 1000
    return results
