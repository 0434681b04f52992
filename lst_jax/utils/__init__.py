"""Small shared helpers: input validation and progress reporting."""
