"""Shared runtime: launcher detection and process groups, the checkpoint protocol, signals and exit codes."""
