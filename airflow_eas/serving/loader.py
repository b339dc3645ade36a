"""Build the processor a spec names: a built-in one, or a custom Python class from processor_path."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

from airflow_eas.serving.builtin import BUILTINS, RowModelProcessor
from airflow_eas.serving.pmml import PmmlProcessor
from airflow_eas.serving.processor import BaseProcessor, StartupError
from airflow_eas.serving.storage import Resolver, find_entry
from airflow_eas.spec import ServiceSpec

PROCESSORS: dict[str, type[RowModelProcessor]] = {**BUILTINS, PmmlProcessor.name: PmmlProcessor}


def build_processor(spec: ServiceSpec, resolver: Resolver) -> tuple[BaseProcessor, bool]:
    """The processor (not yet initialised) and whether it is a built-in one."""
    model_path = resolver.resolve(spec.model_path, "model_path") if spec.model_path else None
    if spec.processor:
        return PROCESSORS[spec.processor](model_path), True
    if not spec.processor_path:
        raise StartupError("the spec names no processor (an image service has no model server)", 2)
    proc_root = resolver.resolve(spec.processor_path, "processor_path")
    entry = spec.processor_entry or proc_root.name
    entry_file = proc_root if proc_root.is_file() else find_entry(proc_root, entry)
    cls = _load_class(entry_file, spec.processor_mainclass or "")
    try:
        proc = cls()
    except Exception as exc:  # noqa: BLE001 - user code may raise anything: one line on stderr
        raise StartupError(f"{spec.processor_mainclass}() failed: {_one_line(exc)}", 3) from None
    proc._eas_model_path = str(model_path) if model_path else None
    return proc, False


def _load_class(entry_file: Path, mainclass: str) -> type:
    if entry_file.suffix != ".py":
        raise StartupError(f"processor_entry {entry_file.name!r} is not a Python file (.py)", 2)
    folder = str(entry_file.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the entry may import its sibling modules
    mod_name = entry_file.stem
    try:
        mod_spec = importlib.util.spec_from_file_location(mod_name, entry_file)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_name] = module
        mod_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - user code may raise anything: one line on stderr
        raise StartupError(
            f"cannot import processor_entry {entry_file.name}: {_one_line(exc, tb=True)}", 3
        ) from None
    cls = getattr(module, mainclass, None)
    if cls is None or not isinstance(cls, type):
        raise StartupError(f"processor_mainclass {mainclass!r} is not a class in {entry_file.name}", 3)
    if not callable(getattr(cls, "process", None)):
        raise StartupError(f"{mainclass} has no process(data) method", 3)
    return cls


def _one_line(exc: BaseException, tb: bool = False) -> str:
    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}".rstrip(
        ": "
    )
    if tb:
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            text += f" (at {Path(last.filename).name}:{last.lineno})"
    return text


def initialize(proc: BaseProcessor, builtin: bool) -> None:
    try:
        proc.initialize()
    except StartupError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code may raise anything: one line on stderr
        raise StartupError(f"initialize failed: {_one_line(exc, tb=not builtin)}", 3) from None
