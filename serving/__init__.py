"""Listing-triage scoring service: settings, decision log, review queue, API keys and the HTTP layer.

Serving reads only the exported model bundle (`bundle`) and the `features` and `decision` libraries, never
training code.
"""
