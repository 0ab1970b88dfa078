"""The foundation: errors, types and logging. Imports nothing else of the project."""
