"""The schema, in SQLAlchemy Core; Alembic's history (migrations/) must produce exactly this.

Timestamps are integers: microseconds since the Unix epoch, UTC. The counting rule compares an
event's time with its user's assignment to the microsecond; integers compare exactly, alike on
every database, and index compactly.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

experiments = Table(
    "experiments",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text),
    Column("primary_event_type", String(100)),
    Column("created_at", BigInteger, nullable=False),
    # Migration 0006: the lifecycle, coverage, audience (rule JSON) and a version for changes.
    Column("status", String(16), nullable=False, server_default="running"),
    Column("coverage_basis_points", Integer, nullable=False, server_default="10000"),
    Column("audience", Text),
    Column("winner_variant_id", String(32)),
    Column("started_at", BigInteger),
    Column("stopped_at", BigInteger),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("layer_id", String(32), ForeignKey("layers.id")),
    Column("slice_start", Integer),
    Column("slice_end", Integer),
    Column("holdout_id", String(32), ForeignKey("holdouts.id")),
    # Migration 0009: how results are read by default (domain/analysis.py), as JSON; NULL: the
    # defaults, for experiments made before it.
    Column("analysis", Text),
    Index("ix_experiments_created_at", "created_at"),
    Index("ix_experiments_layer", "layer_id"),
)

layers = Table(
    "layers",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("seed", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

holdouts = Table(
    "holdouts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("seed", String(64), nullable=False),
    Column("basis_points", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# Users held out, from the first time one asked an experiment that opts into the holdout.
holdout_members = Table(
    "holdout_members",
    metadata,
    Column("holdout_id", String(32), ForeignKey("holdouts.id"), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("first_seen_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("holdout_id", "user_id", name="pk_holdout_members"),
)

# QA overrides: users forced into a variant; loaded with their experiment (a few per experiment).
experiment_overrides = Table(
    "experiment_overrides",
    metadata,
    Column("experiment_id", String(32), ForeignKey("experiments.id"), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("variant_id", String(32), nullable=False),
    Column("forced_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("experiment_id", "user_id", name="pk_experiment_overrides"),
)

variants = Table(
    "variants",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("experiment_id", String(32), ForeignKey("experiments.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("traffic_basis_points", Integer, nullable=False),
    Column("is_control", Boolean, nullable=False),
    UniqueConstraint("experiment_id", "name", name="uq_variants_experiment_name"),
)

user_assignments = Table(
    "user_assignments",
    metadata,
    Column("experiment_id", String(32), ForeignKey("experiments.id"), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("variant_id", String(32), ForeignKey("variants.id"), nullable=False),
    Column("assigned_at", BigInteger, nullable=False),
    # PostgreSQL: the writing transaction's id (migration 0005 sets the default), which tells
    # the folder what is folded (folding.py); SQLite uses the rowid instead and leaves it NULL.
    Column("txid", BigInteger),
    UniqueConstraint("experiment_id", "user_id", name="uq_user_assignments_experiment_user"),
    # Users per variant (up to an end date) from the index alone, without touching the rows.
    Index("ix_user_assignments_variant", "experiment_id", "variant_id", "assigned_at"),
    Index("ix_user_assignments_txid", "txid").ddl_if(dialect="postgresql"),
)

events = Table(
    "events",
    metadata,
    # BIGINT on servers; on SQLite, INTEGER PRIMARY KEY is the rowid itself.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("experiment_id", String(32), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("value", Float),
    Column("properties", Text),
    Column("event_id", String(256), unique=True),
    Column("txid", BigInteger),  # as user_assignments.txid
    # The one secondary index on SQLite (migration 0003 says why): an experiment's events by
    # time, for date ranges and for a new assignment's earlier events. Time-ordered keys
    # append, where a key by user would put every insert at a random page.
    Index("ix_events_experiment_time", "experiment_id", "timestamp"),
    # PostgreSQL: the folder's window, by transaction id. Ids grow, so this index appends too.
    Index("ix_events_txid", "txid").ddl_if(dialect="postgresql"),
)

# ---- pre-aggregated results (adapters/sqlalchemy/aggregates.py keeps them up to date)
# On SQLite WITHOUT ROWID: the rows live in their key's B-tree, one write per upsert, not two.
# event_type "" stands for "every type": a real event_type has at least one character.
ANY_TYPE = ""

def _user_totals(name: str) -> Table:
    """Per user and event type (and "" for every type): events and value sum."""
    return Table(
        name,
        metadata,
        Column("experiment_id", String(32), primary_key=True),
        Column("user_id", String(256), primary_key=True),
        Column("event_type", String(100), primary_key=True),
        Column("events", BigInteger, nullable=False),
        Column("value_sum", Float, nullable=False),
        sqlite_with_rowid=False,
    )


user_event_totals = _user_totals("user_event_totals")

def _event_totals(**squares: str) -> list[Column]:
    """domain.totals.EventTotals' columns, kept per variant or per slice and variant.
    ``squares``: events_sum_squares' server default, where a migration added it later."""
    return [
        Column("events", BigInteger, nullable=False),
        Column("users", BigInteger, nullable=False),
        Column("value_sum", Float, nullable=False),
        Column("value_sum_squares", Float, nullable=False),
        Column("events_sum_squares", BigInteger, nullable=False, **squares),
    ]


variant_event_totals = Table(
    "variant_event_totals",
    metadata,
    Column("experiment_id", String(32), primary_key=True),
    Column("variant_id", String(32), primary_key=True),
    Column("event_type", String(100), primary_key=True),
    *_event_totals(server_default="0"),
    sqlite_with_rowid=False,
)

# The ratio metrics' (numerator, denominator) event types of each experiment (domain/metrics.py),
# registered when an experiment declares them; ``filled`` once a fold has summed the users'
# totals so far into variant_pair_totals, which folds then keep up to date.
metric_pairs = Table(
    "metric_pairs",
    metadata,
    Column("experiment_id", String(32), primary_key=True),
    Column("numerator_type", String(100), primary_key=True),
    Column("denominator_type", String(100), primary_key=True),
    Column("filled", Boolean, nullable=False, server_default=false()),
    sqlite_with_rowid=False,
)

# Per variant and registered pair: Σ aᵢ·bᵢ of the users' event counts of the two types, and
# Σ vᵢ·bᵢ of the numerator's value total and the denominator's count (domain/totals.CrossTotals).
variant_pair_totals = Table(
    "variant_pair_totals",
    metadata,
    Column("experiment_id", String(32), primary_key=True),
    Column("variant_id", String(32), primary_key=True),
    Column("numerator_type", String(100), primary_key=True),
    Column("denominator_type", String(100), primary_key=True),
    Column("events_products", BigInteger, nullable=False),
    Column("value_products", Float, nullable=False),
    sqlite_with_rowid=False,
)

# CUPED's covariate (docs/statistics.md, CUPED; migration 0011), kept for the experiments
# registered here (``analysis.cuped``): ``filled`` once a fold has filled the two tables below
# with what was folded before the registration; folds keep them from then on.
covariate_experiments = Table(
    "covariate_experiments",
    metadata,
    Column("experiment_id", String(32), primary_key=True),
    Column("filled", Boolean, nullable=False, server_default=false()),
    sqlite_with_rowid=False,
)

# Events folded while their user had no assignment, found by user when the assignment comes;
# and per user and event type (and "" for every type), the totals of the PRE_PERIOD before the
# user's assignment.
prior_events = Table(
    "prior_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("experiment_id", String(32), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_prior_events_user", "experiment_id", "user_id"),
    Index("ix_prior_events_time", "timestamp"),  # the folder drops those no assignment can reach
)

user_pre_totals = _user_totals("user_pre_totals")

# Per variant and event type (and "" for every type), CUPED's sums over the users with a
# pre-period (domain/totals.CovariateTotals): how many, Σx and Σx² of their pre-period values,
# how many of them also have a counted event, and Σx·y with their counted values. Folds keep
# them by increments from the two per-user tables, so a read is O(variants).
variant_covariate_totals = Table(
    "variant_covariate_totals",
    metadata,
    Column("experiment_id", String(32), primary_key=True),
    Column("variant_id", String(32), primary_key=True),
    Column("event_type", String(100), primary_key=True),
    Column("users", BigInteger, nullable=False),
    Column("value_sum", Float, nullable=False),
    Column("value_sum_squares", Float, nullable=False),
    Column("users_counted", BigInteger, nullable=False),
    Column("value_products", Float, nullable=False),
    sqlite_with_rowid=False,
)

# Per user and UTC day (days since 1970-01-01) or hour (hours since the epoch), for results
# over a date range: whole days and hours read these, only the edges read events. Only real
# event types; the variant rides along so that a read needs no join to the assignments.
def _user_period_totals(name: str, period: str) -> Table:
    return Table(
        name,
        metadata,
        Column("experiment_id", String(32), primary_key=True),
        Column(period, BigInteger, primary_key=True),
        Column("event_type", String(100), primary_key=True),
        Column("user_id", String(256), primary_key=True),
        Column("variant_id", String(32), nullable=False),
        Column("events", BigInteger, nullable=False),
        Column("value_sum", Float, nullable=False),
        sqlite_with_rowid=False,
    )


user_day_totals = _user_period_totals("user_day_totals", "day")
user_hour_totals = _user_period_totals("user_hour_totals", "hour")

# Users assigned per variant, as folded: results without a range read these, not the
# assignments. Writers never touch it (the folder does), so no write queues on a counter row.
variant_users = Table(
    "variant_users",
    metadata,
    Column("experiment_id", String(32), primary_key=True),
    Column("variant_id", String(32), primary_key=True),
    Column("users", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# Breakdowns (domain/breakdown.py; migration 0012): the values of an experiment's dimensions a
# user was assigned with, written with the assignment; and per slice (dimension, value) what
# variant_users and variant_event_totals hold per variant, kept by the folder alike.
assignment_dimensions = Table(
    "assignment_dimensions",
    metadata,
    Column("experiment_id", String(32), primary_key=True),
    Column("user_id", String(256), primary_key=True),
    Column("dimension", String(100), primary_key=True),
    Column("value", String(200), nullable=False),
    sqlite_with_rowid=False,
)

slice_users = Table(
    "slice_users",
    metadata,
    Column("experiment_id", String(32), primary_key=True),
    Column("dimension", String(100), primary_key=True),
    Column("value", String(200), primary_key=True),
    Column("variant_id", String(32), primary_key=True),
    Column("users", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

slice_event_totals = Table(
    "slice_event_totals",
    metadata,
    Column("experiment_id", String(32), primary_key=True),
    Column("dimension", String(100), primary_key=True),
    Column("value", String(200), primary_key=True),
    Column("variant_id", String(32), primary_key=True),
    Column("event_type", String(100), primary_key=True),
    *_event_totals(),
    sqlite_with_rowid=False,
)

# One row: how far the folder has come. SQLite: the highest folded rowid of events and of
# assignments. PostgreSQL: both hold one transaction-id horizon; rows of transactions below it
# are folded. ``folded_at`` (microseconds, UTC) is when the last fold committed.
fold_state = Table(
    "fold_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("events_horizon", BigInteger, nullable=False),
    Column("assignments_horizon", BigInteger, nullable=False),
    Column("folded_at", BigInteger, nullable=False),
)

# ---- access: API keys and the audit trail of admin actions
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("scopes", String(100), nullable=False),  # space-separated, sorted
    # Hex SHA-256 of the secret: the secret itself is never stored. Unique: the auth lookup.
    Column("digest", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("expires_at", BigInteger),
    Column("revoked_at", BigInteger),
    Index("ix_api_keys_created_at", "created_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("at", BigInteger, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", String(50), nullable=False),
    Column("target_type", String(50), nullable=False),
    Column("target_id", String(64), nullable=False),
    Column("details", Text, nullable=False),  # JSON
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_target", "target_id", "at"),
)
