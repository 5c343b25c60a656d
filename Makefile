# The two set-up commands of the README. Both install everything first (scripts/install.sh).
.PHONY: demo test install

install:
	bash scripts/install.sh

demo: install
	.venv/bin/tsct demo $(ARGS)

test: install
	.venv/bin/python -m pytest $(ARGS)
