"""The chaos suite (issue 10 §6): one fault at a time under load, one checker for every member.

Run it alone with ``pytest -q tests/chaos`` (about half a minute on 2 cores);
it prints the table of faults at the end. ``checker.py`` says what is judged,
``harness.py`` how a run goes, ``proxy.py`` how network faults are made.
"""
