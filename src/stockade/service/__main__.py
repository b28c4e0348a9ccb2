"""`python -m stockade.service [--host H] [--port P]`: the service without the CLI."""

import argparse

from stockade.service.serve import serve
from stockade.settings import Settings

parser = argparse.ArgumentParser(prog="python -m stockade.service")
parser.add_argument("--host")
parser.add_argument("--port", type=int)
parser.add_argument("--config", help="a TOML settings file")
args = parser.parse_args()
overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
serve(Settings.load(args.config, **overrides))
