"""SMTP in, durably stored, one transaction per message, handed to its handler."""
