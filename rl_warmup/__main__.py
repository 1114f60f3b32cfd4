"""``python -m rl_warmup <command>``: the same as the ``rl-warmup`` console command."""

import sys

from rl_warmup.experiment.commands import main

sys.exit(main())
