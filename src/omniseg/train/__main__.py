"""`python -m omniseg.train CONFIG [--steps N] [--out DIR] [--no-resume]`: the entry point for
`torchrun --nproc_per_node 2 -m omniseg.train CONFIG` (gloo on CPU); same options as `omniseg train`."""

import sys

from omniseg.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
