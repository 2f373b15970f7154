"""The experimentation service's Python client.

- ``Client`` / ``AsyncClient``: one method per endpoint, with retries on ``503``, ``429`` and
  lost connections (when safe), and typed answers (``models``).
- ``EventTracker`` / ``ExposureReporter``: events and exposures sent in background batches.
- ``LocalAssigner``: users assigned in-process from ``GET /definitions``, as the service would.
- Errors: ``ApiError`` and a subclass per status, ``TransportError`` when no answer came.
"""

from experiments_client.aio import AsyncClient
from experiments_client.batching import BackgroundBatcher, BatcherStats, SendOutcome
from experiments_client.client import Client
from experiments_client.definitions import Decision, Definitions, Exposure
from experiments_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    UnexpectedResponse,
    ValidationError,
)
from experiments_client.local import LocalAssigner
from experiments_client.models import (
    Analysis,
    Assignment,
    AuditEntry,
    AuditPage,
    Comparison,
    Experiment,
    ExperimentPage,
    ExposureResult,
    Health,
    Holdout,
    HoldoutResults,
    Key,
    KeyPage,
    Layer,
    PowerResult,
    Results,
    TrackResult,
    Variant,
    VariantResult,
)
from experiments_client.tracking import EventTracker, ExposureDropped, ExposureReporter

__all__ = [
    "Analysis",
    "ApiError",
    "Assignment",
    "AsyncClient",
    "AuditEntry",
    "AuditPage",
    "BackgroundBatcher",
    "BadRequest",
    "BatcherStats",
    "Client",
    "Comparison",
    "Conflict",
    "Decision",
    "Definitions",
    "EventTracker",
    "Experiment",
    "ExperimentPage",
    "Exposure",
    "ExposureDropped",
    "ExposureReporter",
    "ExposureResult",
    "FieldError",
    "Forbidden",
    "Health",
    "Holdout",
    "HoldoutResults",
    "Key",
    "KeyPage",
    "Layer",
    "LocalAssigner",
    "NotFound",
    "PayloadTooLarge",
    "PowerResult",
    "RateLimited",
    "Results",
    "SendOutcome",
    "ServiceUnavailable",
    "TrackResult",
    "TransportError",
    "Unauthorized",
    "UnexpectedResponse",
    "ValidationError",
    "Variant",
    "VariantResult",
]
