"""The Optuna side of a study: its storage (SQLite or a database server), pruner and best
trial. Optuna and SQLAlchemy are imported inside the functions: the CLI imports this module
for DEFAULT_STORAGE whether or not the [tune] extra is installed."""

from __future__ import annotations

import math
import os
import time
import warnings
from typing import Any

from imgcls.errors import UserError
from imgcls.tools.common import first_line

# Database drivers SQLAlchemy imports for a storage URL, and the packages that hold them.
_DRIVERS = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "pymysql": "pymysql",
            "MySQLdb": "mysqlclient"}
DEFAULT_STORAGE = "sqlite:///tune.db"  # relative to the current directory
SQLITE_TIMEOUT_S = 60  # several workers write one SQLite file: wait for its lock this long


def open_storage(url: str) -> Any:
    """An Optuna storage for `url`; SQLite waits for other workers' locks instead of failing.
    A mistake (no such driver, an unreachable server, a bad path) is a UserError."""
    import optuna
    import sqlalchemy.exc

    if "://" not in url:
        raise UserError(f"--storage {url!r} is not a database URL; pass e.g. "
                        f"sqlite:///tune.db or postgresql://user:password@host/database")
    connect_args = {"timeout": SQLITE_TIMEOUT_S} if url.startswith("sqlite") else {}
    last_error: Exception | None = None
    for attempt in range(5):
        try:
            # A heartbeat marks a trial whose worker died (killed, machine lost) as FAIL
            # when another worker next starts a trial, instead of RUNNING forever.
            with warnings.catch_warnings():  # heartbeat_interval is "experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs={"connect_args": connect_args},
                    heartbeat_interval=60, grace_period=180,
                )
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as error:
            # Workers starting together race to create the tables of a new database ("table
            # ... already exists", "UNIQUE constraint failed: alembic_version"): the loser
            # finds them made on its next try.
            last_error = error
            racing = isinstance(error, sqlalchemy.exc.IntegrityError) or any(
                text in str(error) for text in ("already exists", "locked"))
            if not racing:
                break
            time.sleep(0.2 * (attempt + 1))
        except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError,
                ImportError, ValueError) as error:
            last_error = error.__cause__ if isinstance(error.__cause__, ImportError) else error
            break
    reason = first_line(last_error, default="unknown error")
    hint = ""
    if isinstance(last_error, ImportError):
        package = _DRIVERS.get(last_error.name or "", last_error.name)
        hint = f"; install its driver: pip install {package}" if package else ""
    elif url.startswith("sqlite"):
        hint = "; the folder of a sqlite:///path file must exist"
    raise UserError(f"cannot open --storage {redacted(url)}: {reason}{hint}")


def redacted(url: str) -> str:
    """The URL without its password, fit to print."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy parses: nothing to hide
        return url


def make_pruner(name: str, epochs: float) -> Any:
    import optuna

    if name == "median":
        # Prune a trial whose metric after an epoch is below the median of the finished
        # trials at that epoch; never after the first epoch, which says little yet (steps
        # are epochs, counted from 1: the earliest pruning step is n_warmup_steps).
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max(1, math.ceil(epochs)), reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_study(storage_url: str, name: str, pruner: str, epochs: int, seed: int | None,
                setup: dict[str, Any]) -> Any:
    import optuna

    storage = open_storage(storage_url)
    # Each worker samples with its own seed: workers seeded alike would try the same
    # settings. constant_liar keeps them apart while trials run (default since Optuna 5).
    seed = seed if seed is not None else (os.getpid() * 2_654_435_761) % 2**32
    with warnings.catch_warnings():  # "experimental" in Optuna 3 and 4
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                    sampler=sampler, pruner=make_pruner(pruner, epochs),
                                    load_if_exists=True)
    except ValueError as error:  # optuna: an existing study of another direction
        raise UserError(f"study {name!r} in {redacted(storage_url)}: {error}; "
                        f"pass another --study") from None
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise UserError(f"study {name!r} in {redacted(storage_url)} minimizes; imgcls tune "
                        f"maximizes: pass another --study")
    known = study.user_attrs.get("imgcls")
    if known is None:
        study.set_user_attr("imgcls", setup)
    elif known != setup:
        raise UserError(
            f"study {name!r} in {redacted(storage_url)} searches data {known['data']!r}, "
            f"models {','.join(known['models'])}, metric {known['metric']}; this worker "
            f"would search {setup['data']!r}, {','.join(setup['models'])}, {setup['metric']}: "
            f"pass another --study (or the same settings to join it)"
        )
    return study


def best_trial(study: Any) -> Any | None:
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None
