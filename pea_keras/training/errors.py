"""Errors a user can fix; `train.py` prints them as one line and exits with status 2."""


class UsageError(Exception):
    """A flag value or combination that cannot work (the message says which and why)."""


class DataError(UsageError):
    """A dataset that cannot be read here (the message says how to prepare it)."""
