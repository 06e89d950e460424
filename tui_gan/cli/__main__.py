"""`python -m tui_gan.cli ...`: the same as the `gan-tui` command (how a launcher starts a trainer)."""

from tui_gan.cli import main

raise SystemExit(main())
