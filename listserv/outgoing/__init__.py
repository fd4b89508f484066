"""Everything that leaves: the published copy, the fan-out, personal notices, the relay."""
