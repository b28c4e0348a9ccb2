"""Stockade: run code nobody trusts, fast, and say exactly what it did.

    >>> from stockade import Sandbox, Limits
    >>> result = Sandbox().run_sync(["/usr/bin/python3", "-c", "print(6*7)"], limits=Limits(cpu_time=1))
    >>> result.status, result.stdout
    (<Status.ok: 'ok'>, b'42\\n')
"""

from stockade.errors import LimitError, SandboxError, StockadeError, UnknownRuntime
from stockade.sandbox import File, Limits, Mount, RunResult, Sandbox, Status

__version__ = "0.1.0"
__all__ = [
    "File", "LimitError", "Limits", "Mount", "RunResult", "Sandbox", "SandboxError",
    "Status", "StockadeError", "UnknownRuntime",
]
