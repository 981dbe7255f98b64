"""The City front door (seed 000): ``/v1/{service}/{action}`` over a registry of services."""
