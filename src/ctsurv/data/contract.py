"""The cohort contract's column names, shared by the cohort table and the adapters.

Kept apart from :mod:`.cohort` so that the adapters (which produce these columns) and the
cohort builder (which runs the adapters) both depend on it and not on each other.
See :mod:`.cohort` for the meaning and type of each column.
"""

from __future__ import annotations

#: Columns every cohort table has, in this order.
CORE_COLUMNS = ["study_id", "patient_id", "split", "image", "report", "time", "event"]
#: Optional per-study overrides of the image header (spacing in mm, rescale to HU).
GEOMETRY_COLUMNS = ["spacing_x", "spacing_y", "spacing_z", "rescale_slope", "rescale_intercept"]
