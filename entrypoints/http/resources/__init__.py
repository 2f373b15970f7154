"""The API's resources, one Controller each with its wire types; the app serves every one listed here."""

from __future__ import annotations

from litestar import Controller

from entrypoints.http.resources.assignments import AssignmentsController
from entrypoints.http.resources.audit import AuditController
from entrypoints.http.resources.breakdown import BreakdownController
from entrypoints.http.resources.events import EventsController
from entrypoints.http.resources.experiments import ExperimentsController
from entrypoints.http.resources.health import HealthController
from entrypoints.http.resources.holdouts import HoldoutsController
from entrypoints.http.resources.keys import KeysController
from entrypoints.http.resources.layers import LayersController
from entrypoints.http.resources.local_assignment import DefinitionsController, ExposuresController
from entrypoints.http.resources.power import PowerController
from entrypoints.http.resources.results import ResultsController
from entrypoints.http.resources.timeseries import TimeSeriesController

RESOURCES: tuple[type[Controller], ...] = (
    HealthController,
    ExperimentsController,
    AssignmentsController,
    DefinitionsController,
    ExposuresController,
    EventsController,
    ResultsController,
    TimeSeriesController,
    BreakdownController,
    PowerController,
    LayersController,
    HoldoutsController,
    KeysController,
    AuditController,
)
