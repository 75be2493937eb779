"""Conduit's shared layer: errors, the resolver factory, settings, repositories."""
