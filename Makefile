# The two commands: `make demo` runs everything on the embedded defaults; `make test` installs
# everything and runs the whole suite (against DATABASE_URL / REDIS_URL when set).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The suite waits on servers, browsers and runtimes far more than it computes: it runs in this many
# pytest-xdist processes, each with its own test database and Redis key prefixes.
TEST_WORKERS ?= 4

.PHONY: demo test lint benchmarks clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m meshadmin.demo

test: $(VENV)/.installed
	./scripts/system-deps
	$(PY) -m ruff check .
	$(PY) manage.py makemigrations --check --dry-run
	DJANGO_SETTINGS_MODULE=meshadmin.settings.production SECRET_KEY=check-deploy-$$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') \
		ALLOWED_HOSTS=mesh.example.com DATABASE_URL=postgres://check@127.0.0.1/check REDIS_URL=redis://127.0.0.1:1/0 \
		$(PY) manage.py check --deploy --fail-level WARNING
	$(PY) -m pytest --numprocesses $(TEST_WORKERS)

benchmarks: $(VENV)/.installed
	for script in benchmarks/[!_]*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) data staticfiles .pytest_cache
