"""Placeholder until the family lands."""
