"""Options several commands share, declared once (Typer ``Annotated`` aliases) so help texts and
defaults cannot drift apart between ``rank``, ``layers`` and ``validate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Probe = Annotated[str, typer.Argument(help="Your images: folder, .csv, .npz or builtin:digits.")]
Reference = Annotated[Optional[str], typer.Option(
    help="Target reference for cka/ii/depara: labels (default when labelled), scratch (a ResNet-20 trained on the probe) or model:<id>\\[@cut].")]
Split = Annotated[str, typer.Option(help="Split folder / npz prefix to probe when the data has splits.")]
MaxImages = Annotated[Optional[int], typer.Option(help="Subsample to at most this many images (stratified, seeded).")]
Seed = Annotated[int, typer.Option(help="Seed of the subsample.")]
ImgSize = Annotated[Optional[int], typer.Option(help="Override the model's input size (pixels).")]
BatchSize = Annotated[int, typer.Option(help="Images per forward pass.")]
WeightsDir = Annotated[Optional[Path], typer.Option(envvar="ADVISOR_WEIGHTS_DIR", help="Folder mirroring model weights (see README).")]
