"""The weekly topic: topic files, weeks, the Monday prompt, the moderators' summary."""
