"""Packaged training recipes (YAML). This folder installs as kpose._recipes."""
