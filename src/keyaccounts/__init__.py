"""keyaccounts: key-account identification and funnel-based sales forecasting."""

__version__ = "0.1.0"
