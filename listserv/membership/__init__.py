"""What members ask by mail (-request) and what their servers report (-bounces)."""
