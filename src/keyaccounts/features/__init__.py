"""Point-in-time feature families: pure functions `f(tables, *, as_of, ...) -> DataFrame`.

Every function reads only rows strictly before `as_of` and returns a frame indexed by
customer_id (deals: opportunity_id), sorted by id.
"""
from .build import Tables, build_features
from .credit import credit, returns
from .deals import deals, open_at
from .growth import growth
from .lifecycle import lifecycle_stage
from .margin import margin
from .potential import potential, run_rate
from .rfm import quintile_score, rfm
from .tenure import tenure

__all__ = ["Tables", "build_features", "credit", "returns", "deals", "open_at", "growth",
           "lifecycle_stage", "margin", "potential", "quintile_score", "run_rate", "rfm", "tenure"]
