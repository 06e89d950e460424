"""The run folder: config.json, metrics.jsonl, state.json, samples/*.png, checkpoints/*.pt, error.log.

`RunDir` (folder.py) is a run's folder and everything written there; reader.py is the one way its
files are read back (a damaged line or file is skipped the same way for every reader); names.py
names new runs; grids.py writes and reads the sample-grid PNGs.
"""

from engine.runs.errors import RunError
from engine.runs.folder import RunDir, check_export_name, export_target, log_line, log_record, resolve_run
from engine.runs.grids import GRID_PADDING, grid_columns, read_grid_png, write_grid_png
from engine.runs.names import new_run_name
from engine.runs.reader import parse_log_line, read_config_dict

__all__ = ["GRID_PADDING", "RunDir", "RunError", "check_export_name", "export_target", "grid_columns", "log_line",
           "log_record", "new_run_name", "parse_log_line", "read_config_dict", "read_grid_png", "resolve_run",
           "write_grid_png"]
