"""The error hierarchy. Raised where things happen; translated to HTTP status
codes or CLI exit codes only at the edges (cli.py, service/)."""


class StockadeError(Exception):
    """Base of every error Stockade raises on purpose."""


class LimitError(StockadeError, ValueError):
    """A limit or size was malformed or out of range (user input)."""


class UnknownRuntime(StockadeError, LookupError):
    """No runtime with that id, name or file extension."""


class SandboxError(StockadeError):
    """The box itself failed (not the program inside it)."""


class CollectError(SandboxError):
    """A run's files could not be read back (too many, too big, nested too deep).
    `result` is the run itself (its output, its status), without the files."""

    def __init__(self, message: str, result: object = None):
        super().__init__(message)
        self.result = result


class SandboxUnavailable(SandboxError):
    """A layer the box cannot run without is missing (bwrap, user namespaces...)."""


class InvalidSubmission(LimitError):
    """A submission field was malformed (user input): unbalanced quotes in compiler
    options or arguments, a refused additional-files zip, a missing source."""
