"""Conveyor side by side with the other Python job queues, on one machine, in one run.

    .venv/bin/python -m bench.compare                  # every system
    .venv/bin/python -m bench.compare --systems celery,conveyor-postgres --jobs 2000

The orchestrator (`__main__`) starts a private Redis server, creates a PostgreSQL
database per system, builds one virtual environment per peer from PyPI (pinned in
`requirements/`, never dependencies of Conveyor), and runs `measure` for each system in
that system's environment. `measure` drives the system through its adapter in `systems/`
(the same procedure for all) and prints its figures as JSON; the orchestrator prints one
table and Conveyor's ratios to the best peer. How each peer is configured, and why that is
fair, is in bench/README.md.

Modules here other than `systems/<system>.py` use the standard library only: they run in
every peer's environment.
"""
