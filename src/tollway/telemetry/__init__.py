"""What the gateway tells its operators: Prometheus metrics (``metrics``) and structured request
logs (``logs``)."""
