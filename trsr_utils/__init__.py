"""trsr: LLM-based text-rich sequential recommendation (LLM-TRSR), as a course.

One module per pipeline stage; the numbered notebooks in ``notebooks/`` call
into these modules and pass data between each other through files in the run
directory (``runs/<profile>/`` by default).
"""

__version__ = "0.1.0"
