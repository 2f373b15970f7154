"""The Redis adapter: the Cache port shared by every instance of the service."""
