"""The engine's configuration: one TOML file, structured by cattrs into frozen attrs classes.

Each section of the file is the configuration class of the part it configures, defined next to that
part with its one set of defaults and validators (`hip3_trio.validators`):

    [detector]    strategy.detector.DetectorConfig
    [limits]      execution.executor.ExecutorConfig
    [time_stop]   execution.time_stop.TimeStopConfig
    [risk]        risk.monitor.RiskConfig
    [batch]       execution.batch.BatchConfig        (the scheduler, and the session's sender)
    [connection]  venue.session.ConnectionConfig     (the session, reconnects, the reconcile loop)
    [alerts]      alerts.AlertsConfig                (the webhook; HIP3_ALERT_WEBHOOK wins, `resolve_alerts`)

The few fields of those classes that are not keys of the file are marked `NOT_IN_FILE` (the file may
not set them); `app.engine_settings` derives them — the per-process cloid prefix, the per-market
minimum edges of ``[[markets]]``, the executor's minimum order value from the detector's — or leaves
their defaults. `Config` itself adds the checks that span sections.

Every field has a safe default, so `--env sim` runs with no file at all. Everything else about the
file is strict, because a typo that silently falls back to a default is a risk limit nobody set:

- unknown keys are errors (with a "did you mean" hint);
- values are type-checked strictly — `true` is not a number, `3.7` is not an integer, `"30"` is not a
  boolean — and range-checked by the attrs validators on each field;
- every problem in the file is reported at once, each with its full key path and the reason, e.g.
  ``limits.max_position_per_market_usd: must be > 0, got -5``, in one `ConfigError` raised at start-up;
- money, prices and basis points are `Decimal`, parsed from the TOML text itself (`parse_float=Decimal`),
  so ``0.1`` is ``Decimal("0.1")`` and no float ever reaches a threshold or a limit. Durations and rates
  are plain floats (they feed Trio's clock, not a price);
- private keys are never read from here. A key-like field name (``private_key``, ``secret``, ``key`` …)
  or a value that looks like a 32-byte hex key refuses the whole file — without echoing the value — and
  points at the environment variable ``HIP3_PRIVATE_KEY`` or the ``key_file`` option (a path to a mode
  0600 file, read by `hip3_trio.wire.keys`);
- mainnet needs ``allow_mainnet = true`` in the file to trade (a dry run, which sends no order and signs
  nothing, observes mainnet without it: ``--env mainnet --dry-run --record DIR``); testnet and mainnet
  need an account address and at least one market. The simulator defaults to its own markets (`SIM_MARKETS`).

How the key paths come about: each attrs class gets a cattrs structure function with detailed
validation, and every field is structured by a hook that first converts the value strictly and then runs
that field's attrs validator. A failure is therefore recorded against the field by cattrs (instead of
surfacing later from ``__init__`` without a name), cross-field checks in ``__attrs_post_init__`` are
recorded against their section, and `cattrs.transform_error` flattens the whole exception group into
one ``path: reason`` line per problem. The same validators run when the classes are built in code, so
a `Config` is valid however it was made.

Why ~480 lines: the loader (cattrs hooks, error flattening), the `[[markets]]` and `[paths]` sections
and the cross-section checks; each runtime section's class lives with the part it configures.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, TypeVar, cast, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, override

from hip3_trio.alerts import WEBHOOK_ENV_VAR, AlertsConfig
from hip3_trio.execution.batch import BatchConfig
from hip3_trio.execution.executor import ExecutorConfig
from hip3_trio.execution.time_stop import TimeStopConfig
from hip3_trio.ops.verdict import VerdictThresholds
from hip3_trio.risk.monitor import RiskConfig
from hip3_trio.strategy.detector import DetectorConfig
from hip3_trio.validators import Invalid, cross_check, finite_decimal, ge, in_file, optional
from hip3_trio.venue.session import ConnectionConfig

__all__ = [
    "DEFAULT_STATE_DIR",
    "ENVS",
    "KEY_ENV_VAR",
    "SIM_MARKETS",
    "STATE_DIR_ENV_VAR",
    "Config",
    "ConfigError",
    "Env",
    "MarketConfig",
    "PathsConfig",
    "load_config",
    "parse_config",
    "resolve_alerts",
    "resolve_state_dir",
    "state_dir_for",
]

Env: TypeAlias = Literal["sim", "testnet", "mainnet"]
_T = TypeVar("_T")

ENVS: Final[tuple[str, ...]] = get_args(Env)

SIM_MARKETS: Final = ("xyz:COIN", "xyz:NVDA", "abc:EUR")  # two dexes: the venue answers per dex
"""Markets traded with ``--env sim`` when the config names none (both exist in the built-in simulator)."""

KEY_ENV_VAR: Final = "HIP3_PRIVATE_KEY"
"""Where the private key comes from instead (same name as `hip3_trio.wire.keys.ENV_VAR`)."""

STATE_DIR_ENV_VAR: Final = "HIP3_STATE_DIR"
DEFAULT_STATE_DIR: Final = Path("hip3-state")

_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}")
# HIP-3 markets are "dex:COIN": a lower-case dex name and the coin as the dex lists it.
_MARKET_RE: Final = re.compile(r"[a-z0-9]{1,16}:[A-Za-z0-9_-]{1,32}")
_HEX_KEY_RE: Final = re.compile(r"(0x)?[0-9a-fA-F]{64}")
_KEY_FIELD_ALLOWED: Final = frozenset({"keyfile"})
_KEY_FIELD_WORDS: Final = ("private", "secret", "mnemonic", "seedphrase", "password", "passphrase")


class ConfigError(Exception):
    """The configuration cannot be used. Raised at start-up only; `problems` lists every `path: reason`."""

    def __init__(self, problems: Sequence[str], source: str = "config") -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        self.source = source
        if len(self.problems) == 1:
            message = f"invalid configuration ({source}): {self.problems[0]}"
        else:
            lines = "".join(f"\n  {p}" for p in self.problems)
            message = f"invalid configuration ({source}), {len(self.problems)} problems:{lines}"
        super().__init__(message)


# --- validators -------------------------------------------------------------------------------------


def _address(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not _ADDRESS_RE.fullmatch(value)):
        shown = (
            repr(value)
            if isinstance(value, str) and len(value) <= 42
            else f"a {len(str(value))}-character value"
        )
        raise Invalid(f"must be a 0x-prefixed 40-hex-digit address, got {shown}", attribute.name)


def _market(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not _MARKET_RE.fullmatch(value):
        raise Invalid(
            f"must be a HIP-3 market in 'dex:COIN' form (e.g. 'xyz:COIN'), got {value!r}", attribute.name
        )


# --- the config classes -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class MarketConfig:
    """One market to trade. In TOML either a plain string ``"xyz:COIN"`` or a table with overrides."""

    coin: str = attrs.field(validator=_market)
    # Replaces detector.min_edge_bps for this market (the signal threshold is fee + slippage + min edge).
    min_edge_bps: Decimal | None = attrs.field(default=None, validator=optional(finite_decimal, ge(0)))


@attrs.frozen(kw_only=True)
class PathsConfig:
    """Where state lives (journal, hard-stop latch, nonce mark).

    None = the CLI's --state-dir, else $HIP3_STATE_DIR, else ./hip3-state (see `resolve_state_dir`)."""

    state_dir: Path | None = None


def _unique_markets(_: Any, attribute: attrs.Attribute[Any], value: tuple[MarketConfig, ...]) -> None:
    seen: set[str] = set()
    for market in value:
        if market.coin in seen:
            raise Invalid(f"{market.coin!r} is listed more than once", attribute.name)
        seen.add(market.coin)


@attrs.frozen(kw_only=True)
class Config:
    """The whole configuration. Build it with `load_config`; every field is valid by construction."""

    # The trading account (master or sub-account); required for testnet/mainnet.
    account_address: str | None = attrs.field(default=None, validator=_address)
    # The API wallet that signs; checked against the key's address at start-up when set.
    signer_address: str | None = attrs.field(default=None, validator=_address)
    # Trade on behalf of this vault (sent as vaultAddress).
    vault_address: str | None = attrs.field(default=None, validator=_address)
    # Path to a mode-0600 file holding the hex private key (else the HIP3_PRIVATE_KEY variable).
    key_file: Path | None = None
    allow_mainnet: bool = False
    markets: tuple[MarketConfig, ...] = attrs.field(default=(), validator=_unique_markets)
    detector: DetectorConfig = attrs.Factory(DetectorConfig)
    limits: ExecutorConfig = attrs.Factory(ExecutorConfig)
    time_stop: TimeStopConfig = attrs.Factory(TimeStopConfig)
    risk: RiskConfig = attrs.Factory(RiskConfig)
    batch: BatchConfig = attrs.Factory(BatchConfig)
    connection: ConnectionConfig = attrs.Factory(ConnectionConfig)
    alerts: AlertsConfig = attrs.Factory(AlertsConfig)
    # The go/no-go verdict's thresholds (`report`), with the plan's defaults.
    verdict: VerdictThresholds = attrs.Factory(VerdictThresholds)
    paths: PathsConfig = attrs.Factory(PathsConfig)

    def __attrs_post_init__(self) -> None:
        # Settings that make trading impossible or breach a limit by construction. Built in code (tests),
        # a detector may be configured to size nothing; in a file it is a mistake.
        d, limits = self.detector, self.limits
        cross_check(
            (
                d.max_notional_usd > limits.max_position_per_market_usd,
                f"detector.max_notional_usd ({d.max_notional_usd}) must not exceed "
                f"limits.max_position_per_market_usd ({limits.max_position_per_market_usd})",
            ),
            (
                d.min_notional_usd > d.max_notional_usd,
                f"detector.min_notional_usd ({d.min_notional_usd}) must not exceed "
                f"detector.max_notional_usd ({d.max_notional_usd}): no order could ever be sized",
            ),
        )

    @property
    def coins(self) -> tuple[str, ...]:
        """The configured market names, in order."""
        return tuple(m.coin for m in self.markets)

    @property
    def min_edge_bps_by_market(self) -> dict[str, Decimal]:
        """The per-market min-edge overrides (markets without one use detector.min_edge_bps)."""
        return {m.coin: m.min_edge_bps for m in self.markets if m.min_edge_bps is not None}


_CLASSES: Final[tuple[type, ...]] = (
    MarketConfig,
    DetectorConfig,
    ExecutorConfig,
    TimeStopConfig,
    RiskConfig,
    BatchConfig,
    ConnectionConfig,
    AlertsConfig,
    VerdictThresholds,
    PathsConfig,
    Config,
)


# --- structuring ------------------------------------------------------------------------------------


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else f"a {len(value)}-character string"
    return str(value)


def _structure_decimal(value: object, _: type) -> Decimal:
    if isinstance(value, bool):
        raise Invalid(f"expected a number, got {_describe(value)}")
    if isinstance(value, Decimal | int | float | str):
        try:
            # str() first: a float is taken at its shortest repr (0.1 -> "0.1"), never its binary value.
            result = Decimal(value.strip() if isinstance(value, str) else str(value))
        except InvalidOperation:
            raise Invalid(f"expected a number, got {_describe(value)}") from None
        if result.is_finite():
            return result
    raise Invalid(f"expected a finite number, got {_describe(value)}")


def _structure_float(value: object, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float):
        raise Invalid(f"expected a number, got {_describe(value)}")
    result = float(value)
    if result != result or result in (float("inf"), float("-inf")):
        raise Invalid(f"expected a finite number, got {_describe(value)}")
    return result


def _exactly(kind: type[_T], expected: str) -> Callable[[object, type], _T]:
    """The structure hook of a plain TOML value: one of type `kind`, as is (a bool is not an integer)."""

    def structure(value: object, _: type) -> _T:
        if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
            return value
        raise Invalid(f"expected {expected}, got {_describe(value)}")

    return structure


def _structure_path(value: object, _: type) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"expected a non-empty path string, got {_describe(value)}")
    return Path(value).expanduser()


def _field_hook(converter: cattrs.Converter, attribute: attrs.Attribute[Any]) -> Callable[[Any, Any], Any]:
    """Structure one field strictly, then run its attrs validator so a failure is tagged with its name."""
    field_type = attribute.type
    validator = attribute.validator

    is_array = get_origin(field_type) is tuple

    def hook(value: Any, _: Any) -> Any:
        if is_array and not isinstance(value, list | tuple):
            # cattrs would iterate a string character by character; TOML wants an array here.
            raise Invalid(f"expected an array, got {_describe(value)}")
        result: Any = converter.structure(value, cast(type, field_type))
        if validator is not None:
            validator(None, attribute, result)
        return result

    return hook


def _build_converter() -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=True)
    converter.register_structure_hook(Decimal, _structure_decimal)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(int, _exactly(int, "an integer"))
    converter.register_structure_hook(bool, _exactly(bool, "true or false"))
    converter.register_structure_hook(str, _exactly(str, "a string"))
    converter.register_structure_hook(Path, _structure_path)
    for cls in _CLASSES:
        attrs.resolve_types(cls)
        # A field that is not a file key is omitted, so the file may not set it (an unknown key).
        overrides: dict[str, Any] = {
            a.name: override(struct_hook=_field_hook(converter, a)) if in_file(a) else override(omit=True)
            for a in attrs.fields(cls)
            if a.init
        }
        table_fn: Callable[[Any, Any], Any] = make_dict_structure_fn(
            cls, converter, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True, **overrides
        )
        converter.register_structure_hook(cls, _table_hook(cls, table_fn))
    return converter


def _table_hook(cls: type, table_fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def hook(value: Any, t: Any) -> Any:
        if cls is MarketConfig and isinstance(value, str):
            value = {"coin": value}  # markets = ["xyz:COIN"] is shorthand for [{coin = "xyz:COIN"}]
        if not isinstance(value, Mapping):
            expected = "a 'dex:COIN' string or a table" if cls is MarketConfig else "a table"
            raise Invalid(f"expected {expected}, got {_describe(value)}")
        return table_fn(value, t)

    return hook


_CONVERTER: Final = _build_converter()


def _format_exception(exc: BaseException, field_type: type | None) -> str:
    if isinstance(exc, Invalid):
        return exc.reason
    if isinstance(exc, ForbiddenExtraKeysError):
        allowed = [a.name for a in attrs.fields(exc.cl) if in_file(a)]
        parts = []
        for name in sorted(exc.extra_fields):
            close = difflib.get_close_matches(name, allowed, n=1)
            parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return f"unknown key{'s' if len(parts) > 1 else ''} {', '.join(parts)}; allowed: {', '.join(allowed)}"
    if isinstance(exc, KeyError):
        return "required key missing"
    # Nothing else is expected; say what it was rather than guess (values are not echoed here).
    return f"invalid value ({type(exc).__name__})"


def _problems(exc: BaseException) -> list[str]:
    problems = []
    for line in cattrs.transform_error(exc, path="", format_exception=_format_exception):
        reason, _, path = line.rpartition(" @ ")
        path = path.lstrip(".")
        problems.append(f"{path}: {reason}" if path else reason)
    return problems


# --- key refusal ------------------------------------------------------------------------------------


def _is_key_like(name: str) -> bool:
    squashed = re.sub(r"[^a-z0-9]", "", name.lower())
    if squashed in _KEY_FIELD_ALLOWED:
        return False
    return squashed.endswith("key") or squashed == "pk" or any(w in squashed for w in _KEY_FIELD_WORDS)


def _walk(value: object, path: str) -> Iterator[tuple[str, str | None, object]]:
    """(path, key name or None for array items, value) for every node below `value`."""
    if isinstance(value, Mapping):
        for name, child in value.items():
            child_path = f"{path}.{name}" if path else str(name)
            yield child_path, str(name), child
            yield from _walk(child, child_path)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            child_path = f"{path}[{index}]"
            yield child_path, None, child
            yield from _walk(child, child_path)


def _key_problems(raw: Mapping[str, Any]) -> list[str]:
    hint = (
        f"private keys are never read from the config file; set the environment variable {KEY_ENV_VAR} "
        "or put the key in a mode-0600 file and set key_file to its path"
    )
    problems = []
    for path, name, value in _walk(raw, ""):
        if name is not None and _is_key_like(name):
            problems.append(f"{path}: key-like field refused: {hint}")
        elif isinstance(value, str) and _HEX_KEY_RE.fullmatch(value.strip()):
            problems.append(f"{path}: value looks like a private key (not shown) and is refused: {hint}")
    return problems


# --- loading ----------------------------------------------------------------------------------------


def parse_config(text: str, env: str, *, source: str = "<string>", dry_run: bool = False) -> Config:
    """Parse TOML `text` into a `Config` for `env` (`dry_run`: a run that sends no order, which needs no
    mainnet opt-in); raises `ConfigError` listing every problem."""
    if env not in ENVS:
        raise ConfigError([f"env: must be one of {', '.join(ENVS)}, got {env!r}"], source)
    try:
        raw = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], source) from None
    key_problems = _key_problems(raw)
    if key_problems:
        raise ConfigError(key_problems, source)
    try:
        config = _CONVERTER.structure(raw, Config)
    except Exception as exc:  # cattrs' ClassValidationError (an ExceptionGroup) or a stray error
        raise ConfigError(_problems(exc), source) from None
    return _for_env(config, cast(Env, env), source, dry_run=dry_run)


def load_config(path: str | os.PathLike[str] | None, env: str, *, dry_run: bool = False) -> Config:
    """The configuration for `env` from the TOML file at `path` (None: defaults, which only sim accepts).

    Raises `ConfigError` for a missing/unreadable file, invalid TOML, any invalid value (all of them,
    each with its key path), a key-like field, or an environment the config does not allow.
    """
    if path is None:
        return parse_config("", env, source="no config file", dry_run=dry_run)
    source = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(["config file not found"], source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read the config file: {type(exc).__name__}: {exc}"], source) from None
    return parse_config(text, env, source=source, dry_run=dry_run)


def _for_env(config: Config, env: Env, source: str, *, dry_run: bool = False) -> Config:
    if env == "sim":
        if not config.markets:
            config = attrs.evolve(config, markets=tuple(MarketConfig(coin=c) for c in SIM_MARKETS))
        return config
    problems = []
    if env == "mainnet" and not config.allow_mainnet and not dry_run:
        problems.append(
            "allow_mainnet: trading on mainnet needs an explicit opt-in; "
            "set allow_mainnet = true in the config"
        )
    if config.account_address is None:
        problems.append(f"account_address: required for --env {env}")
    if not config.markets:
        problems.append(f"markets: at least one market is required for --env {env}")
    if problems:
        raise ConfigError(problems, source)
    return config


def resolve_state_dir(
    config: Config,
    cli_state_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The state directory: --state-dir, else paths.state_dir, else $HIP3_STATE_DIR, else ./hip3-state."""
    if cli_state_dir is not None:
        return Path(cli_state_dir).expanduser()
    if config.paths.state_dir is not None:
        return config.paths.state_dir
    env_value = (os.environ if environ is None else environ).get(STATE_DIR_ENV_VAR, "").strip()
    return Path(env_value).expanduser() if env_value else DEFAULT_STATE_DIR


def resolve_alerts(config: Config, environ: Mapping[str, str] | None = None) -> AlertsConfig:
    """The ``[alerts]`` section with the webhook URL from $HIP3_ALERT_WEBHOOK, which wins over the
    file's `webhook_url` (an empty variable counts as unset). Raises `ConfigError` for a value that
    is not an http(s) URL (without showing it: a webhook URL is a secret)."""
    value = (os.environ if environ is None else environ).get(WEBHOOK_ENV_VAR, "").strip()
    if not value:
        return config.alerts
    try:
        return attrs.evolve(config.alerts, webhook_url=value)
    except Invalid as exc:
        raise ConfigError([f"{WEBHOOK_ENV_VAR}: {exc.reason}"], "environment") from None


def state_dir_for(
    cli_state_dir: str | os.PathLike[str] | None,
    config_path: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The state directory of an operator command (``report``, ``hardstop``, ``check``), found as the
    engine finds its own: ``--state-dir``, else the ``--config`` file's ``paths.state_dir``, else
    ``$HIP3_STATE_DIR``, else ``./hip3-state`` (`resolve_state_dir`).

    The file is checked as the engine checks it, except for what depends on the network (an account
    address, markets, ``allow_mainnet``): the state directory is the same whatever ``--env`` the engine
    runs with. Raises `ConfigError` for a file the engine would refuse, so a typo never sends the
    command to another journal.
    """
    config = Config() if config_path is None else load_config(config_path, "sim")
    return resolve_state_dir(config, cli_state_dir, environ)
