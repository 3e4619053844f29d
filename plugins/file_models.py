"""Model source ``file:``: a local weights file plus the architecture to build it with.

Syntax: ``file:/path/w.safetensors?arch=<timm arch>&<kwarg>=<value>...``; kwargs may also be
comma-separated (``?arch=mobilenetv2_100,pad_type=same,bn_eps=0.001,num_classes=19``). Values are
read as Python literals where they parse (numbers, True/False), else as strings. Pickle files
(.pth/.pt/.bin) are read with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from advisor.errors import AdvisorError
from advisor.hookspecs import hookimpl
from advisor.models.ids import ModelRef
from advisor.models.sources import ResolveContext, Resolved
from advisor.models.weights import WEIGHT_SUFFIXES, file_fingerprint


def parse_file_id(text: str) -> tuple[Path, str, dict]:
    path, _, query = text.partition("?")
    params = {}
    for part in filter(None, re.split(r"[&,]", query)):
        key, sep, value = part.partition("=")
        if not sep:
            raise AdvisorError(f"'{part}' in model id 'file:{text}' is not key=value", "write file:/path/w.safetensors?arch=NAME&key=value")
        try:
            params[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            params[key.strip()] = value.strip()
    arch = params.pop("arch", None)
    if not arch:
        raise AdvisorError(f"model id 'file:{text}' does not say which architecture to build", "append ?arch=<timm architecture>, e.g. ?arch=resnet18")
    return Path(path).expanduser(), str(arch), params


class FileSource:
    prefix = "file"
    describe = "a local weights file: file:/path/w.safetensors?arch=NAME&num_classes=19"

    def resolve(self, ref: ModelRef, ctx: ResolveContext) -> Resolved:
        path, arch, kwargs = parse_file_id(ref.name)
        if not path.is_file():
            raise AdvisorError(f"weights file '{path}' does not exist", "check the path in the file: model id")
        if path.suffix not in WEIGHT_SUFFIXES:
            raise AdvisorError(f"weights file '{path}' has an unknown suffix", f"use one of {', '.join(WEIGHT_SUFFIXES)}")
        return Resolved(ref=ref, arch=arch, kwargs=kwargs, weights=path, weights_from="file",
                        fingerprint=file_fingerprint(arch, kwargs, path=path))


@hookimpl
def register_model_sources(register):
    register(FileSource())
