"""gan-tui's training engine: config, data, models, losses, trainer, runner, checkpoints, runs.

No user-interface code lives here and nothing here imports textual: the engine is driven through
`engine.runner.Runner` with the commands and events of `engine.events`. Importing this package
is cheap; torch loads only with the modules that need it.
"""
