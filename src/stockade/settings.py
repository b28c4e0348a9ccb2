"""Every knob of Stockade in one object, built once at start and passed down.

Sources, strongest first: keyword arguments, `STOCKADE_*` environment variables,
an optional TOML file (`STOCKADE_CONFIG_FILE` or `Settings.load(config_file=...)`),
then the defaults below. The Judge0 defaults and maxima are Judge0 CE 1.13.1's own
(in Judge0's units: seconds and KB), so a client sees the numbers it expects.

    >>> settings = Settings.load()
    >>> settings.port, settings.cpu_time_limit, settings.max_memory_limit
    (2358, 5.0, 512000)
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _words(value: Any) -> list[str]:
    """Judge0 takes token lists as one space-separated string; TOML may give a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    return [str(item) for item in value]


class Settings(BaseSettings):
    """The service's configuration (see the module docstring for the sources)."""

    model_config = SettingsConfigDict(env_prefix="STOCKADE_", extra="ignore")

    # --- where and how the service runs
    host: str = "127.0.0.1"
    port: int = Field(2358, ge=0, le=65535)
    data_dir: Path = Path(".stockade")
    database_url: str | None = None  # None: SQLite (WAL) in data_dir
    # Runs at once. Two per core: part of a box's life is setup that waits on the
    # kernel, and with one per core the CPU sat idle then (docs/performance.md).
    workers: int = Field(default_factory=lambda: 2 * (os.cpu_count() or 1), ge=1)
    max_queue_size: int = Field(100, ge=1)
    max_request_size: int = Field(32 * 1024 * 1024, ge=1024)  # bytes of one HTTP body
    request_timeout: float = Field(30.0, gt=0, le=3600)  # seconds a client has to send a request's head, and its body
    # Compiled products, shared by every box (so it must be traversable by the box
    # users); None: the engine's default (/var/cache/stockade/compile as root).
    cache_dir: Path | None = None
    cache_size: int = Field(256 * 1024 * 1024, ge=0)  # bytes of compiled artifacts kept
    box_slots: int = Field(32, ge=1)
    # Boxes kept built ahead of time, so that a run pays only for its own program
    # (Sandbox(warm=...)); None: one per worker, at most half the slots.
    warm_boxes: int | None = Field(None, ge=0)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    # --- authentication (Judge0's AUTHN_*/AUTHZ_*); empty means none configured
    authn_header: str = "X-Auth-Token"
    authn_token: Annotated[list[str], NoDecode] = Field(default_factory=list)
    authz_header: str = "X-Auth-User"
    authz_token: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- CORS (Judge0's ALLOW_ORIGIN / DISALLOW_ORIGIN, space-separated): by
    # default any origin; with allow_origin only those; with disallow_origin any
    # origin that contains none of those strings.
    allow_origin: Annotated[list[str], NoDecode] = Field(default_factory=list)
    disallow_origin: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- features an operator turns on or off
    enable_wait_result: bool = True
    enable_compiler_options: bool = True
    allowed_languages_for_compile_options: Annotated[list[str], NoDecode] = Field(default_factory=list)
    enable_command_line_arguments: bool = True
    enable_submission_delete: bool = False
    enable_callbacks: bool = True
    callbacks_max_tries: int = Field(3, ge=1, le=10)
    callbacks_timeout: float = Field(5.0, gt=0, le=60)
    # Networks a callback may reach although they are loopback/private/link-local
    # (CIDR strings, e.g. "127.0.0.1/32"). Empty: only public addresses.
    callback_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    enable_additional_files: bool = True
    enable_batched_submissions: bool = True
    max_submission_batch_size: int = Field(20, ge=1)
    submission_cache_duration: float = 1.0
    use_docs_as_homepage: bool = False
    maintenance_mode: bool = False
    maintenance_message: str = "Stockade is currently in maintenance."
    # The box has no network at all yet, so network access cannot be granted
    # safely: both must stay False (see _network_stays_off); reported by /config_info.
    allow_enable_network: bool = False
    enable_network: bool = False

    # --- Judge0 limits: defaults and maxima (seconds, KB, counts)
    cpu_time_limit: float = Field(5.0, ge=0)
    max_cpu_time_limit: float = Field(15.0, ge=0)
    cpu_extra_time: float = Field(1.0, ge=0)
    max_cpu_extra_time: float = Field(5.0, ge=0)
    wall_time_limit: float = Field(10.0, ge=1)
    max_wall_time_limit: float = Field(20.0, ge=1)
    memory_limit: int = Field(128000, ge=2048)
    max_memory_limit: int = Field(512000, ge=2048)
    stack_limit: int = Field(64000, ge=0)
    max_stack_limit: int = Field(128000, ge=0)
    max_processes_and_or_threads: int = Field(60, ge=1)
    max_max_processes_and_or_threads: int = Field(120, ge=1)
    enable_per_process_and_thread_time_limit: bool = False
    allow_enable_per_process_and_thread_time_limit: bool = True
    enable_per_process_and_thread_memory_limit: bool = False
    allow_enable_per_process_and_thread_memory_limit: bool = True
    max_file_size: int = Field(1024, ge=0)
    max_max_file_size: int = Field(4096, ge=0)
    number_of_runs: int = Field(1, ge=1)
    max_number_of_runs: int = Field(20, ge=1)
    redirect_stderr_to_stdout: bool = False
    max_extract_size: int = Field(10240, ge=0)  # KB unpacked of additional_files

    @field_validator("host", "data_dir", mode="before")
    @classmethod
    def _not_blank(cls, value: Any, info: Any) -> Any:
        # An empty value is a template's unset variable more often than a
        # choice: as the host it listened on every address (0.0.0.0), open to
        # the network, and as the data directory it took the current one.
        if isinstance(value, str) and not value.strip():
            meant = ("0.0.0.0 listens on every address" if info.field_name == "host"
                     else "give . for the current directory")
            raise ValueError(f"cannot be empty ({meant})")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value  # (INFO as info)

    @field_validator("authn_token", "authz_token", "allow_origin", "disallow_origin", mode="before")
    @classmethod
    def _tokens(cls, value: Any) -> list[str]:
        return _words(value)

    @field_validator("authn_token", "authz_token")
    @classmethod
    def _no_blank_token(cls, value: list[str]) -> list[str]:
        # A TOML list can hold "" (a template's unset variable): an empty
        # header, or ?X-Auth-User=, then matched it. Refused, not dropped: with
        # none left, authentication would be off without a word.
        if any(not token.strip() for token in value):
            raise ValueError("a token cannot be blank")
        return value

    @field_validator("allowed_languages_for_compile_options", "callback_allowed_networks", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> list[str]:
        # Environment variables arrive as one string: accept spaces or commas.
        if isinstance(value, str):
            return value.replace(",", " ").split()
        return _words(value)

    @field_validator("callback_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad one
        return value

    @model_validator(mode="after")
    def _network_stays_off(self) -> Settings:
        # CVE-2024-29021: Judge0's networked boxes reached the host's services. Ours
        # have no network namespace that is kept off loopback and private ranges
        # yet, so the switch exists (Judge0 has it) but cannot be turned on.
        if self.allow_enable_network or self.enable_network:
            raise ValueError(
                "allow_enable_network/enable_network cannot be turned on yet: boxes have no "
                "network that is kept away from the host's loopback and private addresses"
            )
        return self

    @model_validator(mode="after")
    def _warm_boxes_fit(self) -> Settings:
        # Each warm box holds a slot; the sandbox keeps at least half for runs.
        if self.warm_boxes is not None and self.warm_boxes > self.box_slots // 2:
            raise ValueError(f"warm_boxes ({self.warm_boxes}) exceeds half of box_slots ({self.box_slots // 2})")
        return self

    @model_validator(mode="after")
    def _defaults_within_maxima(self) -> Settings:
        pairs = [
            ("cpu_time_limit", "max_cpu_time_limit"),
            ("cpu_extra_time", "max_cpu_extra_time"),
            ("wall_time_limit", "max_wall_time_limit"),
            ("memory_limit", "max_memory_limit"),
            ("stack_limit", "max_stack_limit"),
            ("max_processes_and_or_threads", "max_max_processes_and_or_threads"),
            ("max_file_size", "max_max_file_size"),
            ("number_of_runs", "max_number_of_runs"),
        ]
        for default, maximum in pairs:
            if getattr(self, default) > getattr(self, maximum):
                raise ValueError(f"{default} ({getattr(self, default)}) exceeds {maximum} ({getattr(self, maximum)})")
        return self

    # Where the optional TOML file comes from; set by load() before construction.
    _toml_file: ClassVar[Path | None] = None
    # The TOML file these settings were read from, if any (load() sets it).
    _config_file: Path | None = PrivateAttr(None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = cls._toml_file or os.environ.get("STOCKADE_CONFIG_FILE")
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_file)))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: str | os.PathLike | None = None, **overrides: Any) -> Settings:
        """Build the settings from overrides, the environment and a TOML file."""
        named = config_file if config_file is not None else os.environ.get("STOCKADE_CONFIG_FILE")
        if named and not Path(named).is_file():
            raise FileNotFoundError(f"config file {named} " + (
                "is not a file" if Path(named).exists() else "does not exist"))
        cls._toml_file = Path(config_file) if config_file else None
        try:
            settings = cls(**overrides)
        except tomllib.TOMLDecodeError as exc:  # (its message names a line, not the file)
            raise ValueError(f"config file {named} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ValueError(f"cannot read config file {named}: {exc.strerror}") from None
        finally:
            cls._toml_file = None
        if named:
            _no_tokens_dropped(Path(named))
        settings._config_file = Path(named) if named else None
        return settings

    @property
    def config_file(self) -> Path | None:
        return self._config_file

    # --- derived values
    @property
    def authn_tokens(self) -> list[str]:
        return list(self.authn_token)

    @property
    def authz_tokens(self) -> list[str]:
        return list(self.authz_token)

    @property
    def warm_box_count(self) -> int:
        if self.warm_boxes is not None:
            return self.warm_boxes
        return min(self.workers, self.box_slots // 2)

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL; SQLite in the data directory unless one is given."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.resolve() / 'stockade.db'}"

    @property
    def callback_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(item, strict=False) for item in self.callback_allowed_networks]


def _no_tokens_dropped(config_file: Path) -> None:
    """An empty STOCKADE_AUTHN_TOKEN (or AUTHZ_TOKEN) beside a file that sets
    tokens: the variable is the stronger source, and empty means none, so it
    turned authentication off without a word (a unit's or a template's
    `STOCKADE_AUTHN_TOKEN=${UNSET}`). Refused, naming both."""
    with open(config_file, "rb") as file:  # (load() read it already: valid TOML)
        in_file = tomllib.load(file)
    for field in ("authn_token", "authz_token"):
        variable = f"STOCKADE_{field.upper()}"
        if variable in os.environ and not os.environ[variable].split() and _words(in_file.get(field)):
            raise ValueError(f"{field} ({variable}): empty, which would drop the tokens that {field} in "
                             f"{config_file} sets: unset the variable, or give the tokens in it")


# STOCKADE_ variables that are not settings: read elsewhere, never a typo.
NOT_SETTINGS = frozenset({"STOCKADE_CONFIG_FILE", "STOCKADE_REQUIRE_RUNTIMES", "STOCKADE_HOSTILE_SUITE_SECRET"})


def unknown_settings(environ: Mapping[str, str] | None = None, config_file: Path | None = None) -> list[str]:
    """What looks like a setting and is none: STOCKADE_* variables and keys of
    the TOML file that name no field, each with the closest one if any is
    close. They are ignored, so a misspelt name would silently leave its
    setting at the default; the server logs these."""
    environ = os.environ if environ is None else environ
    fields = sorted(Settings.model_fields)

    def closest(key: str, prefix: str = "") -> str:
        close = difflib.get_close_matches(key, fields, n=1)
        return f" (did you mean {prefix}{close[0].upper() if prefix else close[0]}?)" if close else ""

    found = []
    for name in sorted(environ):
        key = name[len("STOCKADE_"):].lower()
        if name.upper().startswith("STOCKADE_") and name.upper() not in NOT_SETTINGS and key not in fields:
            found.append(name + closest(key, "STOCKADE_"))
    if config_file:
        try:
            with open(config_file, "rb") as file:
                keys = tomllib.load(file)
        except (OSError, tomllib.TOMLDecodeError):
            keys = {}  # (Settings.load says what is wrong with it)
        # (A key written as its variable, STOCKADE_PORT, means port.)
        found += [f"{key} in {config_file}{closest(key.lower().removeprefix('stockade_'))}"
                  for key in sorted(keys) if key not in fields]
    return found


def settings_error(exc: Exception, flags: Collection[str] = (), config_file: str | Path | None = None) -> str:
    """One line for what is wrong with the settings: each field, where its
    value came from (the command's flag, for the fields in `flags`; the TOML
    file, `config_file` or STOCKADE_CONFIG_FILE, for a key it holds that no
    variable overrides; else the variable), and why (pydantic's own message
    spans several lines)."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    named = config_file or os.environ.get("STOCKADE_CONFIG_FILE")
    in_file: dict[str, Any] = {}
    if named:
        try:
            with open(named, "rb") as file:
                in_file = tomllib.load(file)
        except (OSError, tomllib.TOMLDecodeError):
            pass  # (then the error is about the file itself)
    parts = []
    for error in errors():
        message = error.get("msg", "invalid").removeprefix("Value error, ")
        field = ".".join(str(item) for item in error.get("loc", ()))
        if not field:  # a check across fields: its message names them
            parts.append(message)
            continue
        given = f", got {error['input']!r}" if "input" in error and not isinstance(error["input"], dict) else ""
        variable = f"STOCKADE_{field.upper()}"
        if field in flags:
            source = "--" + field.replace("_", "-")
        elif field in in_file and variable not in os.environ:
            source = f"{field} in {named}"
        else:
            source = variable
        parts.append(f"{field} ({source}): {message}{given}")
    return "; ".join(parts)
