"""`python -m dyn ...` (and `torchrun ... -m dyn train ...`): the `dyn` command."""

from .cli import main

main()
