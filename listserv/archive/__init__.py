"""What was published: raw bytes once, indexes derived, read back for people."""
