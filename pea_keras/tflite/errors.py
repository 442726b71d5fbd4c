"""The one error type the deploy kit raises for user mistakes.

The CLI turns it into a one-line ``pea-tflite: error: ...`` message; anything
else escaping is a bug and keeps its traceback.
"""


class TFLiteError(ValueError):
    """A bad input (file, data, flag) or a model that breaks a deploy promise."""
