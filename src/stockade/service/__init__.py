"""The HTTP service: FastAPI app, Judge0 routes, durable store and dispatch.

    >>> from stockade.service import create_app
    >>> from stockade.settings import Settings
    >>> app = create_app(Settings.load())   # serve with uvicorn, or `stockade serve`
"""

from stockade.service.app import create_app

__all__ = ["create_app"]
