# The two commands: `make run` serves the demo on 127.0.0.1:8080, `make test` runs every test.
DEMO_DB ?= config/demo/legacy.db
export DEMO_DB

.PHONY: run test demo-db bench lint

run:
	bash scripts/install-deps.sh run
	$(MAKE) demo-db
	cargo run --release --locked -- serve --config config/demo.toml

test:
	bash scripts/install-deps.sh test
	# Failures end the output with their messages rather than with long backtraces.
	RUST_BACKTRACE=0 cargo test --locked

# Rebuilt whenever its script changes.
demo-db: $(DEMO_DB)
$(DEMO_DB): config/demo/legacy.sql
	rm -f $@ $@-wal $@-shm
	sqlite3 $@ < config/demo/legacy.sql

lint:
	cargo fmt --check
	cargo clippy --all-targets --locked -- -D warnings

bench:
	bash scripts/install-deps.sh test
	bash scripts/install-deps.sh bench
	$(MAKE) demo-db
	bash bench/run.sh
	bash bench/expand.sh
	bash bench/export.sh
	bash bench/compression.sh
	bash bench/tracing.sh
	cargo build --release --locked --bin portico --example tds_bench && $${CARGO_TARGET_DIR:-target}/release/examples/tds_bench
	.venv/bin/python bench/webhooks.py
	.venv/bin/python bench/state_size.py
	cargo build --release --locked --bin portico --example webhook_sink
	.venv/bin/python bench/fleet.py
