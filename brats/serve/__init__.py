"""``brats serve``: a local web app that segments a BraTS case and shows it in a multiplanar viewer.

:func:`create_app` builds the FastAPI app (one model in memory, predictions one at a time) and :func:`serve`
runs it with uvicorn. See ``docs/serve.md``.
"""

from brats.serve.app import DEFAULT_MAX_UPLOAD_MB, create_app, serve

__all__ = ["DEFAULT_MAX_UPLOAD_MB", "create_app", "serve"]
