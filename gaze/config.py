"""Configs as plain Python files plus ``--key=value`` overrides -> one plain dict.

nanoGPT's configurator rebuilt as functions (DESIGN.md §3, specs/style.md §1.1)::

    python cub/train.py cub/configs/kfn_r50.py --batch_size=8 --amp='bf16'

1. the defaults file (``cub/config.py``: commented assignments) is executed into a fresh
   dict; public names holding primitives, tuples, lists, dicts or None become the keys;
2. each ``*.py`` argument (relative to the working directory, else to the defaults
   file's folder) is executed on top of it, in order; it may only set existing keys;
3. each ``--key=value`` is parsed with :func:`ast.literal_eval`, falling back to the raw
   string (so ``--name=gat`` needs no quotes).

Every override is type-checked against the default: the type must be the same, except
that an int is accepted (and stored as a float) for a float key, a list and a tuple
stand in for each other (stored as the default's type), a None default accepts
anything, and a str key accepts None (an optional path switched off). A bool key rejects ints and an int key rejects bools. An unknown key is an
error that names the closest known key. ``--help`` prints every key with its default
and the comment above it.
"""

from __future__ import annotations

import ast
import difflib
import io
import json
import os
import shutil
import sys
import tokenize
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from gaze.atomic import atomic_path

#: Value types a config key may hold (nanoGPT keeps int/float/bool/str; we add containers).
CONFIG_TYPES = (bool, int, float, str, tuple, list, dict, type(None))
#: Key added by :func:`load_config`: the files it read, defaults first (copied by save_config).
FILES_KEY = "config_files"


class ConfigError(ValueError):
    """A config file or override that cannot be applied; the message names key, file, value."""


def load_config(defaults_path: str | os.PathLike, argv: Sequence[str] | None = None,
                choices: Mapping[str, Sequence[Any]] | None = None,
                renamed: Mapping[str, str] | None = None,
                readers: Mapping[str, Callable[[Path], Sequence[tuple[str, Any, str]]]] | None = None) -> dict:
    """Defaults file, then override files, then ``--key=value`` -> a plain dict.

    Args:
        defaults_path: the defaults file (plain commented assignments).
        argv: command-line arguments (``sys.argv[1:]`` when None): ``*.py`` override files
            and ``--key=value`` items; ``--help``/``-h`` prints :func:`config_help` and exits.
        choices: key -> its valid values (e.g. the registered models), checked after all
            overrides and listed by ``--help``.
        renamed: former key -> its current name; setting a former key is an error saying so.
        readers: file suffix -> reader of a paper's own config file (e.g. PIM's ``.yaml``:
            ``gaze.published_configs``) giving [(our key, value, its own key)], applied like
            an override file (each value type-checked, errors naming the file and its key).

    Returns:
        dict of key -> value, plus ``config_files``: the files read, as strings.

    Raises:
        ConfigError: unknown key (with the closest match), wrong type, bad argument.
        FileNotFoundError: a config file that does not exist.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    defaults_path = Path(defaults_path)
    choices, renamed, readers = dict(choices or {}), dict(renamed or {}), dict(readers or {})
    if "--help" in argv or "-h" in argv:
        print(config_help(defaults_path, choices))
        raise SystemExit(0)
    config = _public_values(_exec_file(defaults_path, {}))
    files = [str(defaults_path)]
    for item in argv:
        if item.startswith("--"):
            key, value, raw = _parse_argument(item)
            _set_value(config, key, value, source="command line", raw=raw, renamed=renamed)
        elif item.endswith(".py"):
            path = _find_override(item, defaults_path.parent)
            _apply_override_file(config, path, renamed)
            files.append(str(path))
        elif Path(item).suffix in readers:
            path = _find_override(item, defaults_path.parent)
            for key, value, origin in readers[Path(item).suffix](path):
                _set_value(config, key, value, source=f"{path} ({origin})", renamed=renamed)
            files.append(str(path))
        else:
            suffixes = "".join(f" or {suffix}" for suffix in readers)
            raise ConfigError(f"argument {item!r}: expected an override file ending in .py{suffixes} or --key=value")
    for key, valid in choices.items():
        if config[key] not in valid:
            raise ConfigError(f"{key}={config[key]!r}: expected one of {', '.join(map(str, valid))}")
    config[FILES_KEY] = files
    return config


def resolve_path(path: str | os.PathLike | None, base: Path) -> Path | None:
    """A config path: ``~`` expanded, relative paths taken from ``base`` (the repository root)."""
    if path is None:
        return None
    path = Path(path).expanduser()
    return path if path.is_absolute() else base / path


def weights_path(path: str | None, base: Path) -> str | None:
    """A ``pretrain_path``: package aliases ('package:...') pass through, files resolve like paths."""
    if path is None:
        return None
    return path if path.startswith("package:") else str(resolve_path(path, base))


def _exec_file(path: Path, namespace: dict) -> dict:
    """Execute a config file in ``namespace`` (a fresh dict of globals) and return it."""
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    source = path.read_text()
    namespace = dict(namespace)
    try:
        exec(compile(source, str(path), "exec"), namespace)
    except Exception as error:  # a broken config file: say which one
        raise ConfigError(f"{path}: executing the config file failed: {error!r}") from error
    return namespace


def _public_values(namespace: dict) -> dict:
    """Keep public names whose values are config types (drops modules, functions, builtins)."""
    return {
        key: value
        for key, value in namespace.items()
        if not key.startswith("_") and isinstance(value, CONFIG_TYPES)
    }


def _find_override(item: str, defaults_folder: Path) -> Path:
    """Resolve an override file relative to the working directory, else the defaults folder."""
    for candidate in (Path(item), defaults_folder / item):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"override file {item!r} not found (looked in {Path.cwd()} and {defaults_folder})"
    )


def _apply_override_file(config: dict, path: Path, renamed: Mapping[str, str]) -> None:
    """Execute ``path`` with the current values visible, then apply what it changed."""
    namespace = _exec_file(path, config)
    for key, value in _public_values(namespace).items():
        if key not in config or value is not config[key]:
            _set_value(config, key, value, source=str(path), renamed=renamed)


def _parse_argument(item: str) -> tuple[str, Any, str]:
    """``--key=value`` -> (key, literal value or the raw string when not a literal, raw)."""
    if "=" not in item:
        raise ConfigError(f"argument {item!r}: expected --key=value")
    key, raw = item[2:].split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = raw
    return key.replace("-", "_"), value, raw


def _set_value(config: dict, key: str, value: Any, source: str, raw: str | None = None,
               renamed: Mapping[str, str] | None = None) -> None:
    """Type-check ``value`` against the default of ``key`` and store it.

    ``raw`` is the command-line text: a str key keeps it even when it parses as a literal.
    """
    if renamed and key in renamed and key not in config:
        raise ConfigError(f"{source}: config key {key!r} is now {renamed[key]!r} "
                          f"(e.g. --{renamed[key]}={value!r})")
    if key not in config or key == FILES_KEY:
        hint = "" if raw is not None else " (helper names in config files start with _)"
        raise ConfigError(f"{source}: unknown config key {key!r}{_suggestion(key, config)}{hint}")
    default = config[key]
    if isinstance(default, str) and raw is not None and not isinstance(value, (str, type(None))):
        value = raw  # --name=123 for a str key means the string "123"
    config[key] = _checked(key, value, default, source)


def _checked(key: str, value: Any, default: Any, source: str) -> Any:
    """Return ``value`` converted to the default's type, or raise ConfigError."""
    if default is None or type(value) is type(default):
        return value
    if value is None and isinstance(default, str):
        return None  # --pretrain_path=None: an optional path or name switched off
    if isinstance(default, float) and type(value) is int:
        return float(value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    raise ConfigError(
        f"{source}: config key {key!r} expects {type(default).__name__} "
        f"(default {default!r}), got {type(value).__name__} {value!r}"
    )


def _suggestion(key: str, config: dict) -> str:
    """'; did you mean 'x'?' for the closest known key, or ''."""
    matches = difflib.get_close_matches(key, [k for k in config if k != FILES_KEY], n=1)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def check_numbers(config: dict, positive: Sequence[str] = (), non_negative: Sequence[str] = ()) -> None:
    """Raise ConfigError naming the key when a count or size is not a number > 0 (``positive``)
    or >= 0 (a key whose default is None accepts any type, so this also checks the type).

    Keys whose value is None (an optional setting left off) are not checked; list values
    (``input_hw``) are checked element by element.
    """
    for keys, ok, expected in ((positive, lambda v: v > 0, "> 0"), (non_negative, lambda v: v >= 0, ">= 0")):
        for key in keys:
            value = config[key]
            values = value if isinstance(value, (list, tuple)) else [value]
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            if value is not None and not (numbers and all(ok(v) for v in values)):
                raise ConfigError(f"config key {key!r} = {value!r}: expected a number {expected}")


#: ``protocol`` values: our corrected defaults, or each method's published protocol on top.
PROTOCOLS = ("ours", "published")
#: Appended to the run name of a published-protocol run, so it never resumes or overwrites ours.
PUBLISHED_SUFFIX = "_published"


def apply_protocol(config: dict, published: dict[str, dict[str, tuple[Any, str]]], method: str,
                   name_key: str) -> dict:
    """Turn on the published protocol of ``method`` when ``config['protocol'] == 'published'``.

    Each published setting replaces the config's value (command line included), a warning
    lists every key with the value it had and why the published one differs, and the run
    name ``config[name_key]`` (None allowed) gets :data:`PUBLISHED_SUFFIX`.

    Args:
        config: a loaded config with a ``protocol`` key.
        published: method -> {key: (published value, what it reproduces)} (the tree's table).
        method: the configured method (a key of ``published``).
        name_key: the key naming the run folder.

    Returns:
        A new dict; unchanged (a copy) for ``protocol='ours'``.

    Raises:
        ConfigError: an unknown protocol, or a method without a published protocol.
    """
    config = dict(config)
    if config["protocol"] not in PROTOCOLS:
        raise ConfigError(f"protocol={config['protocol']!r}: expected one of {', '.join(PROTOCOLS)}")
    if config["protocol"] == "ours":
        return config
    if method not in published:
        raise ConfigError(f"protocol='published': no published protocol for {method!r} "
                          f"(known: {', '.join(sorted(published))})")
    lines = []
    for key, (value, reason) in published[method].items():
        lines.append(f"  {key} = {value!r} (was {config[key]!r}): {reason}")
        config[key] = _checked(key, value, config[key], "published protocol")
    if config[name_key] is not None and not str(config[name_key]).endswith(PUBLISHED_SUFFIX):
        config[name_key] = f"{config[name_key]}{PUBLISHED_SUFFIX}"
    warnings.warn(f"protocol='published' reproduces the published {method} protocol, known defects included; "
                  "it turns on:\n" + "\n".join(lines), UserWarning, stacklevel=2)
    return config


def config_or_report(load: Callable[[list[str] | None], dict], argv: list[str] | None) -> dict | None:
    """``load(argv)``, or None after reporting its ConfigError through the ``gaze`` logger (a
    script then exits with 2)."""
    from gaze.engine.logging import report_logger  # the engine builds on this module: import when used

    try:
        return load(argv)
    except ConfigError as error:
        report_logger().error("error: %s", error)
        return None


def registry_choices() -> dict[str, list]:
    """The valid values of the keys that name a registered thing: ``model_type`` (the model
    registry), ``lr_schedule`` (None = the method's recipe, or a registered schedule) and
    ``eval_protocol`` (the evaluation protocols); for :func:`load_config` and ``--help``."""
    from gaze.engine.evaluate import EVAL_PROTOCOLS  # the registries build on this module: import when used
    from gaze.engine.optim import SCHEDULES
    from gaze.models import list_models

    return {"model_type": list_models(), "lr_schedule": [None, *sorted(SCHEDULES)],
            "eval_protocol": sorted(EVAL_PROTOCOLS)}


def evaluated_config(config: Mapping[str, Any], checkpoint: Mapping) -> dict[str, Any]:
    """``config`` for evaluating ``checkpoint`` (ours or imported): its model type, the keys that
    define the network as it saved them (those the class reads, ``config_keys_read``), and no
    weight source besides the checkpoint (``pretrain_path``, ``init_from`` off)."""
    from gaze.models import model_class  # the registry imports every model: only when evaluating

    saved = checkpoint.get("config") or {}
    keys = model_class(checkpoint["model_name"]).config_keys_read()
    return {**config, **{k: saved[k] for k in keys if k in saved}, "model_type": checkpoint["model_name"],
            "pretrain_path": None, "init_from": None}


def apply_recipe(config: dict, tree_recipe: Mapping[str, Any], method_recipe: Mapping[str, Any]) -> dict:
    """Fill the training keys a config leaves unset from the method's recipe, else the tree's.

    A key is unset when the config holds it as None or ``'default'``, or not at all (the
    engine's selection keys, e.g. ``select_metric``, live in no tree file).

    Args:
        config: a loaded config.
        tree_recipe: key -> the tree's value (e.g. cub's SGD 0.01 cosine, HAFC's Adam 5e-4).
        method_recipe: key -> the method's published value (``GazeModel.training_recipe``).

    Returns:
        A new dict.
    """
    config = dict(config)
    for key in {**tree_recipe, **method_recipe}:
        if config.get(key) is None or config.get(key) == "default":
            config[key] = method_recipe[key] if key in method_recipe else tree_recipe[key]
    return config


def config_help(defaults_path: str | os.PathLike, choices: Mapping[str, Sequence[Any]] | None = None) -> str:
    """Every key of the defaults file with its default and the comment above (or beside) it;
    keys with ``choices`` list their valid values."""
    path = Path(defaults_path)
    source = path.read_text()
    comments = _comments_by_line(source)
    defaults = _public_values(_exec_file(path, {}))
    lines = [f"config keys of {path} (override with FILE.py or --key=value):"]
    for node in ast.parse(source).body:
        targets = _assigned_names(node)
        for name in targets:
            if name in defaults:
                comment = _comment_for(node, comments)
                lines.append(f"  {name} = {defaults[name]!r}" + (f"  # {comment}" if comment else ""))
                if choices and name in choices:
                    lines.append(f"      choices: {' | '.join(map(repr, choices[name]))}")
    return "\n".join(lines)


def _comments_by_line(source: str) -> dict[int, tuple[str, bool]]:
    """line number -> (comment text, whether the line holds only the comment)."""
    comments = {}
    lines = source.splitlines()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row = token.start[0]
            alone = lines[row - 1].strip().startswith("#")
            comments[row] = (token.string.lstrip("#").strip(), alone)
    return comments


def _assigned_names(node: ast.stmt) -> list[str]:
    """Names assigned by a top-level ``x = ...`` or ``x: T = ...`` statement."""
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _comment_for(node: ast.stmt, comments: dict[int, tuple[str, bool]]) -> str:
    """The comment beside an assignment, else the comment lines directly above it.

    Section headers above a key (``# --- data``) describe the section, not the key.
    """
    text, alone = comments.get(node.end_lineno, ("", True))
    if text and not alone:
        return text
    above = []
    row = node.lineno - 1
    while row in comments and comments[row][1]:
        above.insert(0, comments[row][0])
        row -= 1
    return " ".join(line for line in above if not line.startswith("---"))


def format_config(config: dict) -> str:
    """One ``key = value`` line per key, sorted, for printing and logs."""
    width = max((len(key) for key in config), default=0)
    return "\n".join(f"{key:<{width}} = {config[key]!r}" for key in sorted(config))


def save_config(config: dict, run_dir: str | os.PathLike) -> Path:
    """Write ``run_dir/config.json`` (atomic) and copy the config files that were read.

    The defaults file is copied as ``config.py``; override files keep their names
    (prefixed with their position when a name repeats).

    Returns:
        path of config.json.
    """
    run_dir = Path(run_dir)
    json_path = run_dir / "config.json"
    with atomic_path(json_path) as temporary:
        temporary.write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
    taken = {"config.json"}
    for index, file in enumerate(config.get(FILES_KEY) or []):
        name = "config.py" if index == 0 else Path(file).name
        if name in taken:
            name = f"{index}_{name}"
        taken.add(name)
        if Path(file).is_file():
            with atomic_path(run_dir / name) as temporary:
                shutil.copyfile(file, temporary)
    return json_path
