"""Operator commands that are not on the path of a post."""
