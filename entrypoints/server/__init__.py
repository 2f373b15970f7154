"""What the service changes in uvicorn: the protocol that refuses bad requests at the edge."""
