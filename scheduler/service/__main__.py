"""`python -m scheduler.service SCENARIO [flags]`: the same as `wattsched serve`."""
import argparse
import sys

from .cli import add_arguments, run

parser = argparse.ArgumentParser(prog="wattsched serve", description="Run the wattsched site daemon.")
add_arguments(parser)
sys.exit(run(parser.parse_args()))
