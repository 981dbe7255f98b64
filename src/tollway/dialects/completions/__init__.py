"""OpenAI's legacy text completions (``POST /v1/completions``) as a front door of the request pipeline.

``wire`` (the small view of a request), ``codec`` (a prompt as one user message through the
canonical model, and the answer as a ``text_completion``), ``stream`` (``text_completion``
chunks) and ``front`` (the ``ChatCodec``) are pure; ``routes`` are the Starlette routes.
"""
