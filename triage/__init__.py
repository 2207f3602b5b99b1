"""The `triage` command line: composes the commands of `training` and `serving` from above both."""
