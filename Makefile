# The README's two commands are `make demo` and `make test`; both set up everything first.
.PHONY: demo test unit lint typecheck protos-check bench setup clean-state

BIN := .venv/bin

setup:
	@scripts/bootstrap

demo: setup
	$(BIN)/fabric demo

# Lint, types, unit tests and integration tests against a real stack the tests start themselves.
# pytest's exit code 5 (no tests collected) is a failure here, never a silent pass.
test: setup lint typecheck
	@$(BIN)/pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

unit: setup
	$(BIN)/pytest tests/unit

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench
