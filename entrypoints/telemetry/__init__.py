"""What the service tells its operators: Prometheus metrics, request ids and the request log."""
