"""Draw the default RoI layout: .venv/bin/python docs/draw_layout.py [--config F] [--out PNG]."""

import argparse

from rig.config import load_config
from rig.layout import draw_layout

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--config")
parser.add_argument("--out", default="docs/roi-layout.png")
args = parser.parse_args()
draw_layout(load_config(args.config), args.out)
print(f"wrote {args.out}")
