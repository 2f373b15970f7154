"""The use cases of the service and the ports they need; imports the domain only."""
