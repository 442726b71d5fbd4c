"""The error type the deploy kit raises for user mistakes.

The CLI turns it into a one-line ``pea-tflite: error: ...`` message; anything
else escaping is a bug and keeps its traceback.
"""

from pea_keras.errors import UserError


class TFLiteError(UserError, ValueError):
    """A bad input (file, flag) or a model that breaks a deploy promise."""
