"""Small shared helpers: input validation, progress reporting, flat parameter trees."""
