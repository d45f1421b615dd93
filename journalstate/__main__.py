"""`python -m journalstate` runs the command line."""

from journalstate._cli import run

run()
