"""Errors a user can fix. The CLIs print them as one line and exit non-zero; anything else
escaping is a bug and keeps its traceback."""


def first_line(e):
    """An exception's first line of text (its type name if it has none), for one-line messages."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def signal_name(returncode):
    """The signal that ended a child process with `returncode` (< 0): SIGSEGV, or "signal N"."""
    import signal

    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class UserError(Exception):
    """A mistake the user can fix: the message says which and how."""


class UsageError(UserError):
    """A flag value or combination that cannot work (the message says which and why)."""


class SettingError(UsageError, ValueError):
    """A setting outside what can work. `setting` is its name as a keyword argument and RunConfig
    field ("width"), `problem` the rest ("must be > 0, got 0"), so train.py can say its own flag."""

    def __init__(self, setting, problem):
        self.setting, self.problem = setting, problem
        super().__init__(f"{setting} {problem}")


class DataError(UsageError, ValueError):
    """Data that cannot be read or used here (the message says how to prepare it). `settings`
    ({keyword: value}) are the keyword arguments its advice names as `keyword=value`, so a
    command-line tool can say its own flags instead (`spelled`)."""

    def __init__(self, message, settings=None):
        self.settings = dict(settings or {})
        super().__init__(message)

    def spelled(self, spell):
        """The message with each `keyword=value` of `settings` written as `spell(keyword, value)`."""
        text = str(self)
        for name, value in self.settings.items():
            text = text.replace(f"{name}={value!r}", spell(name, value))
        return text


class ModelFileError(UserError, ValueError):
    """A saved model that cannot be read (the message names the file and why)."""


class UntrustedCodeError(ModelFileError):
    """A model file that would run code it stores while loading (the message names the layer and
    how to save the model without it)."""


class UnfinishedScheduleError(UserError, ValueError):
    """`strip` refused: some PEALayers still blend in the novel activation (alpha < 1).

    `unfinished` names them ("name (alpha=0.5000)"); `advice` is the caller's way out, so a
    command-line tool can say its own flag instead of the library's `force=True`."""

    def __init__(self, unfinished, advice):
        self.unfinished = list(unfinished)
        self.fact = ("these PEALayers still use the novel activation (alpha != 1): "
                     f"{', '.join(self.unfinished)}")
        super().__init__(f"Cannot strip: {self.fact}. {advice}")


class TFLiteError(UserError, ValueError):
    """A bad input of the deploy kit (file, flag) or a model that breaks a deploy promise."""
