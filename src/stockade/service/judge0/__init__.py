"""The Judge0 CE 1.13.1 API, spoken exactly (../shared/specs/judge0-ce-1.13.1.md).

This package translates between Judge0's world (KB, decimal strings, Ruby-style
base64, status ids) and Stockade's native values; nothing below it knows Judge0.
"""

from stockade.service.judge0.routes import build_router

__all__ = ["build_router"]
