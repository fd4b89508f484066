"""listserv: a moderated, multilingual discussion forum over email."""
