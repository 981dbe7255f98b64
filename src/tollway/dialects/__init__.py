"""Front doors: one package per wire dialect (decode, encode, stream, errors, routes)."""
