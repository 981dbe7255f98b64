"""Admin and user API handlers."""
