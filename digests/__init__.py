"""Building and sending digests (select → build → enqueue); arrives with the digests issue."""
