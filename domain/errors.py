"""Domain errors: each says what was refused and why, in words a client can act on."""

from __future__ import annotations


class DomainError(Exception):
    """Base class of every error the domain raises on purpose."""


class TaskNotFoundError(DomainError):
    """Raised when a task does not exist (or belongs to another tenant)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} not found")
        self.task_id = task_id


class InvalidTransitionError(DomainError):
    """Raised when the task's current status does not allow a command."""

    def __init__(self, command: str, status: str, allowed: frozenset[str]) -> None:
        allowed_list = ", ".join(sorted(allowed))
        super().__init__(
            f"cannot {command.replace('_', ' ')} a task that is {status}; "
            f"allowed from: {allowed_list}"
        )
        self.command = command
        self.status = status
        self.allowed = sorted(allowed)


class VersionConflictError(DomainError):
    """Raised when the caller's expected version is not the task's current one."""

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"task is at version {current}, not {expected}")
        self.expected = expected
        self.current = current


class RevokedKeyError(DomainError):
    """Raised when a command's key was revoked before its events could be committed: the
    write's own transaction found the key no longer active, and nothing was saved."""

    def __init__(self, keys: frozenset[str]) -> None:
        super().__init__("unknown or revoked key")
        self.keys = keys


class ConcurrencyError(DomainError):
    """Raised when a command kept losing races with other writers."""


class RuleViolationError(DomainError):
    """Raised when a command is well-formed but breaks a domain rule."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
