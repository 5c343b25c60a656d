# The two set-up commands of the README. Both install everything first (scripts/install.sh).
.PHONY: demo test install lint

install:
	bash scripts/install.sh

demo: install
	.venv/bin/tsct demo $(ARGS)

test: install lint
	.venv/bin/python -m pytest $(ARGS)

# ruff (configured in pyproject.toml): the linter and the formatter's check, as CI runs them
lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
