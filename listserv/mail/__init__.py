"""Pure knowledge of mail: addresses, parsing, text decoding, templates. No database, no settings."""
