"""`etl-assets`: validate specs, seed the demo, run pipelines in-process, open the UI.

The click group and its shared helpers are in `group.py`; each command group has its own
module, and all of them are registered here, on the group `etl_assets.cli:main` names.
Modules are imported as modules, so `etl_assets.cli.run` (say) stays the module, not its
command.
"""

from __future__ import annotations

from etl_assets.api import cli as api_cli
from etl_assets.cli import dev, group, history, jobs, ops, report, run, schedule

main = group.main

for _command in (run.run, history.history, history.show, history.prune, jobs.jobs, dev.demo, dev.instance,
                 dev.dev, schedule.schedule_command, api_cli.api_group, ops.backfill_command,
                 ops.doctor_command, report.report_command):
    main.add_command(_command)

__all__ = ["main"]
