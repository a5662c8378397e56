"""Plugins that exist to test virtkit's discovery and composition through real entry points."""
