"""Execution engines. 'local' is the pandas code in keyaccounts.features/train/score; 'spark'
(keyaccounts.engines.spark, optional extra `keyaccounts[spark]`) runs the same feature
families, training and scoring on Apache Spark.

Nothing here imports pyspark: the Spark modules are imported only when `--engine spark` is
asked for, so the default install and the local engine never load it.
"""
from __future__ import annotations

import importlib.util
import os
import shutil

ENGINES = ("local", "spark")


def spark_installed() -> bool:
    """pyspark importable (without importing it)."""
    return importlib.util.find_spec("pyspark") is not None


def java_available() -> bool:
    """A java executable Spark can start (JAVA_HOME/bin/java or java on PATH)."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return True
    return shutil.which("java") is not None


def spark_unavailable_reason() -> str | None:
    """Why the Spark engine cannot run here, or None when it can."""
    if not spark_installed():
        return "pyspark is not installed: pip install 'keyaccounts[spark]'"
    if not java_available():
        return "Spark needs Java 17+ (no java on PATH and no JAVA_HOME)"
    return None
