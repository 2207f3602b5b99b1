"""Shared listing-triage library: data contract, validation, feature builder and routing policy.

Imported by both `training` and `serving`; imports neither.
"""
