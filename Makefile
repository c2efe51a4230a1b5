.PHONY: demo test lint
demo:  ## run the demo site on 127.0.0.1:8000 (SQLite, local media, database worker)
	./scripts/demo
test:  ## run every test (SQLite, PostgreSQL, browser)
	./scripts/test
lint:
	.venv/bin/python -m ruff check . || true
