"""Errors the services raise for the caller to fix; the server turns them into MCP tool errors."""


class UserError(ValueError):
    """Bad input or an unknown id: the message names the field and the problem."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NotFound(UserError):
    def __init__(self, field: str, value: str, what: str) -> None:
        super().__init__(field, f"no {what} with id {value!r}")
