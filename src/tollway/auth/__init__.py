"""Keys, identities, admin secret (JWT and OAuth arrive with later issues)."""
