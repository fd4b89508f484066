# Quick start: `make serve` runs the forum on the embedded default; `make test` passes the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
POSTFIX := /usr/sbin/postfix
PG_DUMP := /usr/bin/pg_dump

.PHONY: install browser postfix pgclient serve test lint bench clean messages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The browser tests drive Debian's chromium with Playwright (which never downloads a browser of its own).
# A file target: the recipe runs only when /usr/bin/chromium is missing.
$(CHROMIUM):
	$$([ "$$(id -u)" -eq 0 ] || echo sudo) apt-get update
	$$([ "$$(id -u)" -eq 0 ] || echo sudo) apt-get install -y --no-install-recommends chromium fonts-noto-cjk

browser: $(CHROMIUM)

# tests/test_postfix.py runs a throwaway Postfix instance (own config and queue, loopback high ports).
# "No configuration": the package sets up no system instance (nothing listens on port 25).
$(POSTFIX):
	echo "postfix postfix/main_mailer_type select No configuration" | \
	  $$([ "$$(id -u)" -eq 0 ] || echo sudo) debconf-set-selections
	$$([ "$$(id -u)" -eq 0 ] || echo sudo) apt-get update
	$$([ "$$(id -u)" -eq 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y --no-install-recommends postfix

postfix: $(POSTFIX)

# `listserv backup`/`restore` on PostgreSQL use Debian's pg_dump and pg_restore (tests/test_backup.py).
$(PG_DUMP):
	$$([ "$$(id -u)" -eq 0 ] || echo sudo) apt-get update
	$$([ "$$(id -u)" -eq 0 ] || echo sudo) apt-get install -y --no-install-recommends postgresql-client

pgclient: $(PG_DUMP)

serve: $(STAMP)
	$(BIN)/listserv init
	$(BIN)/listserv serve

# Every storage test runs on SQLite and on the PostgreSQL server at 127.0.0.1:5432 (a throwaway database
# per run); LISTSERV_TEST_PG=0 runs SQLite only on a machine without one.
test: $(STAMP) $(CHROMIUM) $(POSTFIX) $(PG_DUMP)
	$(BIN)/ruff check listserv digests tests bench
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/mbox_import.py

# After changing a web template: collect its messages, then translate the new entries of each
# listserv/locale/<lang>/LC_MESSAGES/listserv.po (tests/test_catalogues.py lists what is missing).
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg --sort-output --no-location -o listserv/locale/listserv.pot .
	$(BIN)/pybabel update -i listserv/locale/listserv.pot -d listserv/locale -D listserv --no-fuzzy-matching

clean:
	rm -rf $(VENV) var .pytest_cache
