"""Chat records: sessions and threads of what callers asked and were answered (seed 004),
captured on the request path by reference only and written behind the response in batches."""
