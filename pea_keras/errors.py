"""Errors a user can fix. The CLIs print them as one line and exit non-zero; anything else
escaping is a bug and keeps its traceback."""


class UserError(Exception):
    """A mistake the user can fix: the message says which and how."""


class UsageError(UserError):
    """A flag value or combination that cannot work (the message says which and why)."""


class DataError(UsageError, ValueError):
    """Data that cannot be read or used here (the message says how to prepare it)."""
