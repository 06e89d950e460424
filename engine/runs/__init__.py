"""The run folder: config.json, metrics.jsonl, state.json, samples/*.png, checkpoints/*.pt, error.log.

`RunDir` (folder.py) is a run's folder: its paths, what the trainer writes there, and the one entry
to reading it back. reader.py is how every file is read (a damaged line or file is skipped the same
way for `ls`, `compare`, the sweep view, the dashboard and resume); liveness.py says where a run
stands; summary.py makes one run folder one plain record (`gan-tui ls --json`, `show`); figures.py
spells a run's figures the same in every listing; names.py names new runs; grids.py writes and reads
the sample-grid PNGs.
"""

from engine.runs.errors import RunError
from engine.runs.folder import (IntactCheckpoint, RunDir, check_export_name, export_target, log_line, log_record,
                                resolve_run)
from engine.runs.figures import format_lr, format_lr_pair
from engine.runs.grids import GRID_PADDING, grid_columns, read_grid_png, write_grid_png
from engine.runs.liveness import LIVE_STATES, last_step, run_state, starting_line
from engine.runs.names import new_run_name
from engine.runs.reader import (JsonFile, LogFollower, LogUpdate, newest_log_records, parse_log_line, read_config_dict,
                                read_json_file, read_json_object, read_log, read_log_head, read_log_tail)
from engine.runs.summary import FD_STATUSES, RUN_KEYS, is_run_folder, quality_figures, run_summary

__all__ = ["FD_STATUSES", "GRID_PADDING", "LIVE_STATES", "RUN_KEYS", "IntactCheckpoint", "JsonFile", "LogFollower",
           "LogUpdate", "RunDir", "RunError", "check_export_name", "export_target", "format_lr", "format_lr_pair",
           "grid_columns", "is_run_folder", "last_step", "log_line", "log_record", "new_run_name",
           "newest_log_records", "parse_log_line", "quality_figures", "read_config_dict", "read_grid_png",
           "read_json_file", "read_json_object", "read_log", "read_log_head", "read_log_tail", "resolve_run",
           "run_state", "run_summary", "starting_line", "write_grid_png"]
