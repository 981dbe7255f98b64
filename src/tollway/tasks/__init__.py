"""Durable asynchronous tasks (images and videos made in the background): the engine every
``tollway serve`` process runs (``engine``) and the routes that submit, poll and cancel them
(``routes``)."""
