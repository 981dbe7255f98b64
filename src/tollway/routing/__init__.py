"""Model resolution, credential pools and the request pipeline every dialect route calls."""
