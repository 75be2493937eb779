"""Logger, Tracer and Metrics, created once for every function.

Service name and namespace come from the environment (POWERTOOLS_SERVICE_NAME,
POWERTOOLS_METRICS_NAMESPACE) set in template.yaml's Globals.
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

# Handlers publish metrics only when they have some; an invocation without any is normal,
# not worth a warning in every log.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger()
tracer = Tracer()
metrics = Metrics()
