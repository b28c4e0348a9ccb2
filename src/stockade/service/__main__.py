"""`python -m stockade.service [--host H] [--port P]`: the service without the CLI."""

import argparse
import sys

from stockade.service.serve import serve
from stockade.settings import Settings, settings_error

parser = argparse.ArgumentParser(prog="python -m stockade.service")
parser.add_argument("--host")
parser.add_argument("--port", type=int)
parser.add_argument("--config", help="a TOML settings file")
args = parser.parse_args()
overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
try:
    settings = Settings.load(args.config, **overrides)
except (ValueError, FileNotFoundError) as exc:
    print(f"stockade: invalid settings: {settings_error(exc, flags=overrides, config_file=args.config)}", file=sys.stderr)
    raise SystemExit(2) from None
serve(settings)
