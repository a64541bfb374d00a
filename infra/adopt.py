"""`ws adopt`: bring a database the repos already run into the layout workspace.yaml declares.

Before ws, the three repos ran Prisma with ``url = env("DATABASE_URL")`` on one database: every table in
``public``, and one ``public._prisma_migrations`` holding the three repos' migrations side by side (a repo that
used ``prisma db push`` has tables but no rows). ws gives each repo its own namespace (PostgreSQL schema) and
its own ``_prisma_migrations``. Two layouts are supported, chosen by the declaration:

* the primary keeps ``public`` (``namespace: public`` on the primary) and each secondary moves to its own schema;
* every repo moves to its own schema.

The plan is computed from the live catalog and each repo's Prisma schema and migrations folder, with no change:

* each table and enum a repo owns moves into the repo's namespace (``ALTER TABLE/TYPE ... SET SCHEMA``: indexes,
  constraints, owned sequences and rows move with it; foreign keys keep pointing at the same tables);
* each ``_prisma_migrations`` row moves to the ``_prisma_migrations`` of the repo whose folder holds that
  migration; a row no repo holds stays where it is and is reported;
* a repo whose tables all exist but whose migrations were never recorded (``db push``) is baselined: each local
  migration is recorded as applied, as ``prisma migrate resolve --applied`` does, so the first coordinated deploy
  applies nothing twice. Migrations of a repo that has recorded ones are left pending for the deploy;
* what stays in a repo's namespace but no repo declares there (the primary keeping ``public``: an old table, an
  extension's) is named in a note, since ``ws schema drift`` will report it as extra.

``apply`` carries the plan out in one transaction, under Prisma's advisory lock and a lock timeout, so it either
happens whole or not at all. Running it again finds nothing to do.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql

from infra.deploy.migrations import PRISMA_DDL, PRISMA_LOCK_KEY, TABLE, migration_files
from infra.deploy.runtimes import runtime_for
from infra.errors import CheckFailed, UsageError
from infra.schema.drift import declared_catalog
from infra.schema.load import LoadedSchemas, load_schemas
from infra.workspace.located import LoadedWorkspace

ObjectKind = Literal["table", "enum"]
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


@dataclass(frozen=True)
class ObjectMove:
    """One table or enum type to move from ``source`` into its repo's namespace ``target``."""

    repo: str
    kind: ObjectKind
    name: str
    source: str
    target: str

    def statement(self) -> sql.Composed:
        keyword = sql.SQL("TABLE") if self.kind == "table" else sql.SQL("TYPE")
        return sql.SQL("ALTER {} {}.{} SET SCHEMA {}").format(
            keyword, sql.Identifier(self.source), sql.Identifier(self.name), sql.Identifier(self.target)
        )

    def describe(self) -> str:
        return f"move {self.kind} {self.source}.{self.name} -> {self.target}.{self.name} ({self.repo})"


@dataclass(frozen=True)
class LedgerMove:
    """Recorded migrations of ``repo`` to move from ``source``'s _prisma_migrations into ``target``'s."""

    repo: str
    source: str
    target: str
    migrations: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"move {len(self.migrations)} recorded migration(s) of {self.repo} from {self.source}.{TABLE} "
            f"to {self.target}.{TABLE}: {', '.join(self.migrations)}"
        )


@dataclass(frozen=True)
class Baseline:
    """Local migrations of ``repo`` to record as applied in ``namespace`` (its tables already exist)."""

    repo: str
    namespace: str
    migrations: tuple[tuple[str, str], ...]  # (name, checksum)

    def describe(self) -> str:
        names = ", ".join(name for name, _ in self.migrations)
        return f"baseline {self.repo}: record {len(self.migrations)} migration(s) as applied in {self.namespace}.{TABLE}: {names}"


@dataclass
class AdoptPlan:
    layout: str
    namespaces: list[str] = field(default_factory=list)  # to create when missing
    moves: list[ObjectMove] = field(default_factory=list)
    ledger_moves: list[LedgerMove] = field(default_factory=list)
    baselines: list[Baseline] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts that change nothing (already in place, left alone)
    problems: list[str] = field(default_factory=list)  # what stops the plan from being applied

    @property
    def empty(self) -> bool:
        return not (self.moves or self.ledger_moves or self.baselines)

    def steps(self) -> list[str]:
        return [
            *(item.describe() for item in self.moves),
            *(item.describe() for item in self.ledger_moves),
            *(item.describe() for item in self.baselines),
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "namespaces": self.namespaces,
            "moves": [dataclasses.asdict(m) for m in self.moves],
            "ledger_moves": [dataclasses.asdict(m) | {"migrations": list(m.migrations)} for m in self.ledger_moves],
            "baselines": [
                {"repo": b.repo, "namespace": b.namespace, "migrations": [name for name, _ in b.migrations]}
                for b in self.baselines
            ],
            "notes": self.notes,
            "problems": self.problems,
            "steps": self.steps(),
        }


@dataclass(frozen=True)
class Owned:
    """What one repo owns in the database according to its Prisma schema."""

    repo: str
    namespace: str
    tables: tuple[str, ...]
    enums: tuple[str, ...]
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)  # table -> declared column names


@dataclass
class LiveCatalog:
    tables: dict[str, set[str]] = field(default_factory=dict)  # name -> namespaces holding a table of that name
    enums: dict[str, set[str]] = field(default_factory=dict)
    ledgers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # namespace -> _prisma_migrations rows


def layout_of(loaded: LoadedWorkspace) -> str:
    primary = loaded.model.repos[loaded.model.primary].schema_
    if primary is not None and primary.namespace == "public":
        return "the primary keeps public; each secondary in its own schema"
    return "every repo in its own schema"


def owned_objects(schemas: LoadedSchemas) -> list[Owned]:
    """Per repo, the tables and enums its schema declares in its own namespace (shared copies excluded)."""
    owned: list[Owned] = []
    for repo, repo_schema in schemas.repos.items():
        catalog, _ = declared_catalog(dataclasses.replace(schemas, repos={repo: repo_schema}))
        namespace = repo_schema.config.namespace
        tables = tuple(sorted(key.split(".", 1)[1] for key in catalog.tables))
        enums = tuple(sorted(key.split(".", 1)[1] for key in catalog.enums))
        columns = {key.split(".", 1)[1]: tuple(table.columns) for key, table in catalog.tables.items()}
        owned.append(Owned(repo, namespace, tables, enums, columns))
    return owned


def read_live(conn: psycopg.Connection[Any]) -> LiveCatalog:
    live = LiveCatalog()
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"
    ).fetchall()
    for namespace, name in rows:
        live.tables.setdefault(name, set()).add(namespace)
    rows = conn.execute(
        "SELECT n.nspname, t.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
        "WHERE t.typtype = 'e' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"
    ).fetchall()
    for namespace, name in rows:
        live.enums.setdefault(name, set()).add(namespace)
    for namespace in sorted(live.tables.get(TABLE, set())):
        cursor = conn.execute(
            sql.SQL("SELECT migration_name, finished_at, rolled_back_at FROM {}.{} ORDER BY started_at").format(
                sql.Identifier(namespace), sql.Identifier(TABLE)
            )
        )
        live.ledgers[namespace] = [
            {"migration_name": r[0], "finished_at": r[1], "rolled_back_at": r[2]} for r in cursor.fetchall()
        ]
    return live


def _place(
    plan: AdoptPlan, owner: Owned, kind: ObjectKind, name: str, locations: set[str], claimed: dict[tuple[str, str], str]
) -> bool:
    """Plan where one object goes; whether it exists at all."""
    if owner.namespace in locations:
        return True
    others = sorted(locations)
    if not others:
        return False
    source = "public" if "public" in others else others[0]
    if len(others) > 1 and "public" not in others:
        plan.problems.append(
            f"{owner.repo}: {kind} {name} exists in {', '.join(others)}; ws cannot tell which one {owner.repo} uses. "
            f"Fix: drop or rename the others, then run `ws adopt` again"
        )
        return True
    key = (source, name)
    if key in claimed:
        plan.problems.append(
            f"{kind} {source}.{name} is declared by both {claimed[key]} and {owner.repo}. "
            "Fix: keep the model in one repo's schema (a secondary copies a shared model, it does not own it)"
        )
        return True
    claimed[key] = owner.repo
    plan.moves.append(ObjectMove(owner.repo, kind, name, source, owner.namespace))
    return True


def plan_adoption(
    loaded: LoadedWorkspace, conn: psycopg.Connection[Any], schemas: LoadedSchemas | None = None
) -> AdoptPlan:
    """What `ws adopt` would do on the database behind ``conn``; changes nothing."""
    schemas = schemas or load_schemas(loaded)
    plan = AdoptPlan(layout_of(loaded))
    for repo, reason in schemas.skipped.items():
        plan.problems.append(f"{repo}: its schema cannot be read ({reason}); ws cannot tell which tables it owns")
    live = read_live(conn)
    owned = owned_objects(schemas)
    present = {row[0] for row in conn.execute("SELECT nspname FROM pg_catalog.pg_namespace").fetchall()}
    claimed: dict[tuple[str, str], str] = {}
    complete: dict[str, bool] = {}
    for owner in owned:
        if owner.namespace not in present and owner.namespace not in plan.namespaces:
            plan.namespaces.append(owner.namespace)
        found = [_place(plan, owner, "table", t, live.tables.get(t, set()), claimed) for t in owner.tables]
        for enum in owner.enums:
            _place(plan, owner, "enum", enum, live.enums.get(enum, set()), claimed)
        missing = [t for t, exists in zip(owner.tables, found, strict=True) if not exists]
        complete[owner.repo] = bool(owner.tables) and not missing
        if missing and len(missing) < len(owner.tables):
            plan.notes.append(f"{owner.repo}: tables not in the database yet: {', '.join(missing)}")
        if complete[owner.repo]:
            absent = _absent_columns(conn, owner, live)
            if absent:  # a migration that adds them has not run: baselining would mark it applied
                complete[owner.repo] = False
                plan.problems.append(
                    f"{owner.repo}: its tables exist but lack declared columns ({', '.join(absent[:5])}"
                    f"{', ...' if len(absent) > 5 else ''}) and none of its migrations is recorded, so ws cannot "
                    "tell which migrations ran. Fix: record the applied ones with `prisma migrate resolve --applied "
                    "NAME`, then run `ws adopt` again"
                )
    _plan_ledgers(loaded, plan, owned, live, complete)
    _note_undeclared(plan, owned, live)
    return plan


def _note_undeclared(plan: AdoptPlan, owned: list[Owned], live: LiveCatalog) -> None:
    """Name what stays in a repo's namespace that no repo declares there: `ws schema drift` (and the deploy's
    validate gate) reports it as extra. Happens mostly when the primary keeps public, which holds what it held."""
    declared = {(o.namespace, kind, name) for o in owned for kind, names in (("table", o.tables), ("enum", o.enums))
                for name in names}  # fmt: skip
    leaving = {(m.source, m.kind, m.name) for m in plan.moves}
    repos: dict[str, list[str]] = {}
    for o in owned:
        repos.setdefault(o.namespace, []).append(o.repo)
    for namespace, names in repos.items():
        found = [
            f"{kind} {name}"
            for kind, catalog in (("table", live.tables), ("enum", live.enums))
            for name, places in sorted(catalog.items())
            if namespace in places
            and name != TABLE
            and (namespace, kind, name) not in declared
            and (namespace, kind, name) not in leaving
        ]
        if found:
            owners = " and ".join(f"{repo}'s" for repo in names)
            plan.notes.append(
                f"{namespace} ({owners} namespace) holds what no repo declares: {', '.join(found)}; "
                f"`ws schema drift` reports them as extra. Fix: declare them in {owners} schema, or move or drop them"
            )


def _absent_columns(conn: psycopg.Connection[Any], owner: Owned, live: LiveCatalog) -> list[str]:
    """Declared columns of ``owner``'s tables that the tables, where they are now, do not have."""
    absent: list[str] = []
    for table in owner.tables:
        places = live.tables.get(table, set())
        where = owner.namespace if owner.namespace in places else ("public" if "public" in places else min(places))
        have = {
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                [where, table],
            ).fetchall()
        }
        absent += [f"{table}.{column}" for column in owner.columns.get(table, ()) if column not in have]
    return absent


def _plan_ledgers(
    loaded: LoadedWorkspace, plan: AdoptPlan, owned: list[Owned], live: LiveCatalog, complete: dict[str, bool]
) -> None:
    namespace_of = {o.repo: o.namespace for o in owned}
    local = {o.repo: migration_files(loaded, o.repo) for o in owned}
    owner_of = {f.name: repo for repo, files in local.items() for f in files}
    recorded: dict[str, set[str]] = {repo: set() for repo in namespace_of}
    for source, rows in sorted(live.ledgers.items()):
        moving: dict[str, list[str]] = {}
        for row in rows:
            name = row["migration_name"]
            repo = owner_of.get(name)
            if repo is None:
                plan.notes.append(f"{source}.{TABLE}: {name} is in no repo's migrations folder; left where it is")
                continue
            target = namespace_of[repo]
            already = {r["migration_name"] for r in live.ledgers.get(target, [])}
            if source == target:
                recorded[repo].add(name)
            elif name in already:
                plan.notes.append(f"{name} of {repo} is recorded in both {source} and {target}; {target}'s row is kept")
            else:
                moving.setdefault(repo, []).append(name)
                recorded[repo].add(name)
        for repo, names in sorted(moving.items()):
            plan.ledger_moves.append(LedgerMove(repo, source, namespace_of[repo], tuple(names)))
    for repo, files in local.items():
        if not files or recorded[repo]:
            continue
        if complete.get(repo):
            plan.baselines.append(Baseline(repo, namespace_of[repo], tuple((f.name, f.checksum) for f in files)))
        elif any(m.repo == repo for m in plan.moves):
            plan.problems.append(
                f"{repo}: some of its tables exist but none of its migrations is recorded, so ws cannot tell which "
                f"of them ran. Fix: record the applied ones with `prisma migrate resolve --applied NAME` (or drop the "
                "partial tables), then run `ws adopt` again"
            )


def apply_adoption(
    database_url: str,
    plan: AdoptPlan,
    *,
    lock_timeout: str = "5s",
    progress: Callable[[str], None] = lambda _: None,
) -> None:
    """Carry ``plan`` out in one transaction (all or nothing) under Prisma's advisory lock."""
    if plan.problems:
        raise CheckFailed(f"adopt: {len(plan.problems)} problem(s) stop the plan: " + "; ".join(plan.problems))
    try:
        with psycopg.connect(database_url, connect_timeout=10) as conn, conn.transaction():
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(lock_timeout)))
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [PRISMA_LOCK_KEY])
            for namespace in plan.namespaces:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(namespace)))
            for move in plan.moves:
                progress(move.describe())
                conn.execute(move.statement())
            for ledger_move in plan.ledger_moves:
                progress(ledger_move.describe())
                _move_rows(conn, ledger_move)
            for baseline in plan.baselines:
                progress(baseline.describe())
                _record_applied(conn, baseline)
    except psycopg.errors.LockNotAvailable as exc:
        raise CheckFailed(
            f"adopt: a table is in use and did not free within the lock timeout ({lock_timeout}); nothing was changed. "
            "Stop the services that use the database (or retry in a quiet moment, or raise --lock-timeout)"
        ) from exc
    except psycopg.Error as exc:
        raise CheckFailed(f"adopt: {str(exc).strip().splitlines()[0]}; nothing was changed") from exc


def _ledger(conn: psycopg.Connection[Any], namespace: str) -> sql.Composed:
    table = sql.SQL("{}.{}").format(sql.Identifier(namespace), sql.Identifier(TABLE))
    conn.execute(sql.SQL(PRISMA_DDL).format(table=table))
    return table


def _move_rows(conn: psycopg.Connection[Any], move: LedgerMove) -> None:
    source = sql.SQL("{}.{}").format(sql.Identifier(move.source), sql.Identifier(TABLE))
    target = _ledger(conn, move.target)
    conn.execute(
        sql.SQL("INSERT INTO {} SELECT * FROM {} WHERE migration_name = ANY(%s)").format(target, source),
        [list(move.migrations)],
    )
    conn.execute(sql.SQL("DELETE FROM {} WHERE migration_name = ANY(%s)").format(source), [list(move.migrations)])


def _record_applied(conn: psycopg.Connection[Any], baseline: Baseline) -> None:
    target = _ledger(conn, baseline.namespace)
    for name, checksum in baseline.migrations:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, "
                "applied_steps_count) VALUES (%s, %s, now(), %s, NULL, NULL, now(), 0)"
            ).format(target),
            [str(uuid.uuid4()), checksum, name],
        )


def adopt(
    loaded: LoadedWorkspace,
    database_url: str,
    *,
    apply: bool = False,
    lock_timeout: str = "5s",
    progress: Callable[[str], None] = lambda _: None,
) -> AdoptPlan:
    """The plan for the database at ``database_url``; with ``apply``, carried out."""
    try:
        with psycopg.connect(database_url, connect_timeout=10) as conn:
            plan = plan_adoption(loaded, conn)
    except psycopg.OperationalError as exc:
        raise UsageError(f"adopt: cannot connect to the database: {str(exc).strip().splitlines()[0]}") from exc
    except psycopg.Error as exc:  # e.g. no right to read another schema's _prisma_migrations
        raise CheckFailed(
            f"adopt: cannot read the database's catalog: {str(exc).strip().splitlines()[0]}; connect as a role that "
            "owns the repos' schemas (the URL the repos migrate with)"
        ) from exc
    if apply and not plan.problems and not plan.empty:
        apply_adoption(database_url, plan, lock_timeout=lock_timeout, progress=progress)
    return plan


def lines(plan: AdoptPlan) -> Iterable[str]:
    """The plan as text, one step a line."""
    yield f"layout: {plan.layout}"
    for namespace in plan.namespaces:
        yield f"create schema {namespace}"
    yield from plan.steps()
    if plan.empty:
        yield "nothing to do: the database already has the declared layout"
    for note in plan.notes:
        yield f"note: {note}"
    for problem in plan.problems:
        yield f"problem: {problem}"


def database_url_for(loaded: LoadedWorkspace, environment: str, explicit: str | None) -> str:
    """The workspace database of ``environment``: ``explicit`` when given, else found like `ws status` finds it."""
    if explicit:
        return explicit
    found = runtime_for(loaded, environment).locate()
    if found is None:
        raise UsageError(
            f"adopt: the {environment} database is not running or cannot be found; pass --database-url "
            "(the URL the repos use today) or start it"
        )
    return found.database_url
