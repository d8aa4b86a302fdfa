"""Floor 1, core: configuration (schema and loading), file I/O, progress bars, distributed helpers and the
layer rule itself. Imports nothing else of the package."""
