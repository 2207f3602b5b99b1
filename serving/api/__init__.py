"""HTTP layer: routers with thin handlers, typed dependencies, request/response schemas."""
