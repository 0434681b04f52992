"""LST jobs: the examples grid and its geometry figures, the target pool, the full evaluation
(Tables 1-2) and its tables."""
