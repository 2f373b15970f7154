"""The HTTP API: the Litestar app, its resources with their wire types, problems and OpenAPI."""
