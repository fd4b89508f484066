"""The gate: the posting policy, holds, reply codes, the one decide(), moderators' replies."""
