"""In-memory adapters: the test fakes, and a real choice for a cache on one box."""
