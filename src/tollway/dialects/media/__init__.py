"""OpenAI's non-chat surfaces as front doors: embeddings, images, speech, transcriptions, videos.

Pure codec modules (one per surface: decode the request, encode a canonical answer in OpenAI's
shape, read an OpenAI-wire upstream's answer for its usage) and their routes (``routes``), which
hand each request to ``ChatPipeline.media``.
"""
