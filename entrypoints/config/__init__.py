"""What the service is built from: settings, the checks made before it starts, and the container."""
