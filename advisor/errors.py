"""The one exception type users see.

Library code raises :class:`AdvisorError` with *what* went wrong and *how to fix it*; only the CLI
edge (``advisor.cli``) turns it into a one-line message and exit code 2.
"""


class AdvisorError(Exception):
    """A problem with the user's input or environment that they can fix.

    ``message`` names the problem, ``hint`` says what to type or do instead.
    """

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class EstimatorSkipped(Exception):
    """Raised by an estimator when the inputs it needs are absent (e.g. no source logits).

    The run goes on; the row shows the reason instead of a score.
    """
