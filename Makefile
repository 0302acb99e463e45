# The two commands a new user needs, and a few more.
.PHONY: serve test setup compress lint format bench

# The port `make serve` listens on: `make serve PORT=8001` when 8000 is taken.
PORT ?= 8000

serve: setup          ## install, then start the embedded service (API + worker)
	.venv/bin/lorita serve --port $(PORT)

test:                 ## install, start PostgreSQL/Redis if needed, run every test
	scripts/test.sh

setup:
	scripts/setup.sh

compress: setup       ## the engine alone, on the built-in 8x8 digits
	.venv/bin/lorita compress --arch fcn --dataset digits --factor 3 --epochs 10

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .
