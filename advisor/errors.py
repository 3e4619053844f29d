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


class EstimatorInputError(ValueError):
    """Raised by an estimator when its numeric input cannot be scored: not a 2-D finite array, too
    few rows or classes, mismatched lengths, or degenerate data the score is undefined on (every
    feature constant, ...). See :mod:`advisor.numeric.checks`, which raises it.

    A ``ValueError`` (code catching that keeps working). The run goes on; the row is reported as
    failed with the message, as for any exception an estimator raises.
    """
