"""``python -m trsr_utils.plan``: see :func:`trsr_utils.plan.report.main`."""

from .report import main


raise SystemExit(main())
