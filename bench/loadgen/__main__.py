# Moved to wirehub.loadgen; kept only while older bench/run.py processes run.
from wirehub.loadgen.__main__ import cli

cli()
