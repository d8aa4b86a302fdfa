"""trsr: LLM-based text-rich sequential recommendation (LLM-TRSR), as a course.

Six floors, each a folder, each importing only the ones below: ``core`` <-
``store`` <- ``method`` (with ``data`` and ``baselines``) <- ``stages`` (one
module per notebook stage) <- ``report`` <- ``tools`` (``python -m trsr_utils``).
The numbered notebooks in ``notebooks/`` call into them and pass data between
each other through files in the run directory (``runs/<profile>/`` by default).
"""

__version__ = "0.1.0"
