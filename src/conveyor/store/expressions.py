"""SQL building blocks that read the same on SQLite and PostgreSQL.

Batches are unpacked in SQL, so a statement has the same text and a fixed number of bound
values whatever the batch size: no bound-parameter limits, one statement per batch. On
PostgreSQL each field travels as one array (unnest), which asyncpg sends in binary: parsing
the batch as one JSON document cost the server more than inserting the rows' heap tuples.
On SQLite the batch is one JSON parameter (json_each), the only collection SQLite binds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import (
    ARRAY,
    Boolean,
    ColumnElement,
    DateTime,
    Float,
    Integer,
    Select,
    Subquery,
    Table,
    Text,
    bindparam,
    column,
    func,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import TypeEngine

from conveyor.core.job import TERMINAL_STATES, JobState
from conveyor.store.engine import dump_json
from conveyor.store.schema import Document, jobs


class document(FunctionElement[Any]):  # lower case: reads as a SQL function
    """JSON text turned into a stored JSON document."""

    type = Document()
    inherit_cache = True


@compiles(document, "postgresql")
def _document_postgresql(element: document, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS jsonb)"


@compiles(document, "sqlite")
def _document_sqlite(element: document, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json({compiler.process(element.clauses, **kw)})"


class appended(FunctionElement[Any]):  # lower case: reads as a SQL function
    """A JSON array with one more element at its end."""

    type = Document()
    inherit_cache = True


@compiles(appended, "postgresql")
def _appended_postgresql(element: appended, compiler: SQLCompiler, **kw: Any) -> str:
    array, item = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"({array} || jsonb_build_array({item}))"


@compiles(appended, "sqlite")
def _appended_sqlite(element: appended, compiler: SQLCompiler, **kw: Any) -> str:
    array, item = (compiler.process(clause, **kw) for clause in element.clauses)
    # json() again: a JSON value read through a subquery has lost its JSON subtype and
    # would otherwise be appended as a string.
    return f"json_insert({array}, '$[#]', json({item}))"


class json_object(FunctionElement[Any]):  # lower case: reads as a SQL function
    """A JSON object built in SQL from alternating keys and values."""

    type = Document()
    inherit_cache = True


@compiles(json_object, "postgresql")
def _json_object_postgresql(element: json_object, compiler: SQLCompiler, **kw: Any) -> str:
    return f"jsonb_build_object({compiler.process(element.clauses, **kw)})"


@compiles(json_object, "sqlite")
def _json_object_sqlite(element: json_object, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_object({compiler.process(element.clauses, **kw)})"


def dialect_insert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that knows ON CONFLICT, in the connection's dialect."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# The order in which schema.py's partial indexes list their states. SQLite uses a partial
# index only when the query repeats the index's WHERE term, list order included.
_INDEXED_STATE_ORDERS = (
    (JobState.SCHEDULED, JobState.RETRYABLE),
    tuple(sorted(TERMINAL_STATES)),
)


def state_in(states: Iterable[JobState | str]) -> ColumnElement[bool]:
    """`state = '...'` or `state IN (...)` with the states written into the SQL text.

    The job indexes are partial (`WHERE state = 'queued'`, ...); a planner can use them only
    when it sees the states in the statement, not behind a bound parameter (SQLite, and
    PostgreSQL's generic plans for prepared statements).
    """
    return one_of(jobs.c.state, [state.value for state in _index_order(states)])


def state_of_found_rows_in(states: Iterable[JobState | str]) -> ColumnElement[bool]:
    """`state_in` written so that no partial index matches it, for statements that find
    their rows by primary key (ids given) and only check each row's state.

    Left as `state = 'running'`, the planner may read a partial index of that state (of
    running jobs, for renewals, settlements and progress) and filter it by id. After an
    ANALYZE that saw few such rows it does, in the generic plan of the prepared statement,
    and that index keeps an entry for every version of every row that was ever in the
    state until a vacuum: each settlement of a drain read all of them, 20-36 s per
    statement after 20 000 jobs, until leases expired under the workers.
    """
    values = sorted(JobState(state).value for state in states)
    return one_of(func.coalesce(jobs.c.state, literal_column("''")), values)


def one_of(expression: ColumnElement[str], values: Iterable[str]) -> ColumnElement[bool]:
    """`expression` equals one of `values`, written into the SQL text (names we define, never
    user input): a planner sees them, and the text stays the same on every execution."""
    literals: list[ColumnElement[str]] = []
    for value in values:
        if not value.replace("_", "").isalnum():
            raise ValueError(f"{value!r} cannot be written into SQL text")
        literals.append(literal_column(f"'{value}'"))
    if len(literals) == 1:
        return expression == literals[0]
    return expression.in_(literals)


def _index_order(states: Iterable[JobState | str]) -> list[JobState]:
    wanted = {JobState(state) for state in states}
    for order in _INDEXED_STATE_ORDERS:
        if wanted == set(order):
            return list(order)
    return sorted(wanted)


class Kind(Enum):
    """How a field of a batch is typed once unpacked."""

    TEXT = "text"
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    DOCUMENT = "document"  # any JSON value; travels as JSON text
    INSTANT = "instant"


_POSTGRES_TYPES: Mapping[Kind, TypeEngine[Any]] = {
    Kind.TEXT: Text(),
    Kind.INTEGER: Integer(),
    Kind.FLOAT: Float(precision=53),
    Kind.BOOLEAN: Boolean(),
    Kind.DOCUMENT: Text(),
    Kind.INSTANT: DateTime(timezone=True),
}


def batch_table(dialect: str, name: str, columns: Mapping[str, Kind]) -> Subquery:
    """A table named `name` with typed `columns`, unpacked from bound values.

    Pass `batch_parameters(dialect, name, columns, rows)` among the parameters at
    execution. Statements over a batch can then be built once and reused.
    """
    if dialect == "postgresql":
        return _postgres_batch(name, columns).subquery(name)
    return _sqlite_batch(name, columns).subquery(name)


def batch_parameters(
    dialect: str, name: str, columns: Mapping[str, Kind], rows: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """The bound values of `batch_table(dialect, name, columns)` holding `rows`."""
    if dialect == "postgresql":
        listed = list(rows)
        return batch_columns(
            name, columns, {key: [row.get(key) for row in listed] for key in columns}
        )
    encoded = [
        {key: _encoded(dialect, kind, row.get(key)) for key, kind in columns.items()}
        for row in rows
    ]
    return {_batch_parameter(name): encoded}


def batch_columns(
    name: str, columns: Mapping[str, Kind], values: Mapping[str, list[Any]]
) -> dict[str, Any]:
    """PostgreSQL: `batch_parameters` from one list of values per column, for a caller that
    has its batch as columns already (no row mappings to build and take apart)."""
    return {
        _field_parameter(name, key): _encoded_field(kind, values[key])
        for key, kind in columns.items()
    }


def shared_field(name: str, key: str, kind: Kind) -> ColumnElement[Any]:
    """PostgreSQL: field `key` that every row of batch `name` has in common, bound once.

    asyncpg encodes an array element by element, testing each for a nested array; a field
    repeated in every row cost more to send as an array than the rows' own fields.
    """
    return _typed(bindparam(_field_parameter(name, key), type_=_POSTGRES_TYPES[kind]), kind)


def shared_parameters(
    name: str, columns: Mapping[str, Kind], values: Mapping[str, Any]
) -> dict[str, Any]:
    """The bound values of `shared_field(name, key, kind)` for each of `columns`."""
    return {
        _field_parameter(name, key): _encoded("postgresql", kind, values.get(key))
        for key, kind in columns.items()
    }


def _batch_parameter(name: str) -> str:
    return f"{name}_batch"


def _field_parameter(name: str, key: str) -> str:
    return f"{name}_batch_{key}"


def _encoded_field(kind: Kind, values: list[Any]) -> list[Any]:
    if kind is Kind.DOCUMENT or kind is Kind.INSTANT:
        return [_encoded("postgresql", kind, value) for value in values]
    return values  # asyncpg encodes text, numbers and booleans itself


def _encoded(dialect: str, kind: Kind, value: Any) -> Any:
    if value is None:
        return None
    if kind is Kind.DOCUMENT:
        return dump_json(value)
    if kind is Kind.INSTANT and isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware datetime")
        # asyncpg sends aware datetimes exactly; epoch seconds are what SQLite stores.
        return value if dialect == "postgresql" else value.timestamp()
    return value


def _postgres_batch(name: str, columns: Mapping[str, Kind]) -> Select[Any]:
    arrays = (
        bindparam(_field_parameter(name, key), type_=ARRAY(_POSTGRES_TYPES[kind]))
        for key, kind in columns.items()
    )
    record = (
        func.unnest(*arrays)
        .table_valued(*(column(key, _POSTGRES_TYPES[kind]) for key, kind in columns.items()))
        .render_derived(name=f"{name}_record")
    )
    return select(*(_typed(record.c[key], kind).label(key) for key, kind in columns.items()))


def _sqlite_batch(name: str, columns: Mapping[str, Kind]) -> Select[Any]:
    parameter = bindparam(_batch_parameter(name), type_=Document())
    each = func.json_each(parameter).table_valued("value").alias(f"{name}_each")
    fields = (
        _typed(func.json_extract(each.c.value, f"$.{key}"), kind).label(key)
        for key, kind in columns.items()
    )
    return select(*fields).select_from(each)


def _typed(value: ColumnElement[Any], kind: Kind) -> ColumnElement[Any]:
    if kind is Kind.DOCUMENT:
        return document(value)
    if kind is Kind.INSTANT:
        return type_coerce(value, jobs.c.run_at.type)
    return type_coerce(value, _POSTGRES_TYPES[kind])
