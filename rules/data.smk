# Data: the demo cohort generator and dataset ingest (cohort tables).
