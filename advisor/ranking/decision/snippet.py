"""Plested & Gedeon 2019's learning rates for the probe's size (:func:`training_protocol`) and the
ready-to-run fine-tuning code behind ``--snippet`` (:func:`snippet`).
"""

from __future__ import annotations

from pathlib import Path

from advisor.errors import AdvisorError
from advisor.ranking.decision.anatomy import Anatomy
from advisor.ranking.decision.describe import count
from advisor.ranking.features import PRE_LOGITS


def training_protocol(examples_per_class: float, cut: str):
    """Plested & Gedeon 2019's fine-tuning protocol for the probe's size (:func:`advisor.validation.finetune.finetune`,
    whose rule this reuses): new layers at ``lr``, transferred trainable layers at ``lr_transferred``,
    both × 0.1 after ``decay_epochs``. ``epochs``: at least as many after the decay as before, and at
    least 10 (Plested & Gedeon 2019 fix the decay point, not the length; 10 is ``advisor validate``'s)."""
    from advisor.validation.finetune import decay_epochs_for, finetune

    return finetune(examples_per_class, epochs=max(10, 2 * decay_epochs_for(examples_per_class)), freeze=cut)


def _kw(kwargs: dict) -> str:
    return "".join(f", {k}={v!r}" for k, v in kwargs.items())


def _load_code(load: dict) -> tuple[list[str], list[str]]:
    """(module-level lines, ``load_model`` body lines) that create the model with its source head."""
    top, body = [], []
    if load["plugin_arch"] and load["how"] != "advisor":
        top += ["from advisor.models.loading import register_plugin_architectures", "",
                f"register_plugin_architectures()  # {load['arch']} is one of advisor's architecture plugins: register it with timm"]
    arch, kw = load["arch"], _kw(load["kwargs"])
    if load["how"] == "pretrained":
        body += [f"model = timm.create_model({arch!r}, pretrained=True, pretrained_cfg_overlay=dict(file=WEIGHTS){kw})"]
    elif load["how"] == "checkpoint_path":
        body += [f"model = timm.create_model({arch!r}, checkpoint_path=WEIGHTS{kw})"]
    elif load["how"] == "filter_fn":
        body += ["from timm.models import load_checkpoint", "",
                 f"from {load['filter_module']} import checkpoint_filter_fn  # the architecture's key mapping (timm's convention)", "",
                 f"model = timm.create_model({arch!r}{kw})",
                 "load_checkpoint(model, WEIGHTS, filter_fn=checkpoint_filter_fn)"]
    else:
        body += [f"# these weights need advisor's own loader ({load['why']})",
                 "from pathlib import Path", "",
                 "from advisor.models.loading import build_model",
                 "from advisor.models.ids import parse_model_id",
                 "from advisor.models.sources import Resolved", "",
                 f"resolved = Resolved(ref=parse_model_id(MODEL_ID), arch={arch!r}, kwargs={load['kwargs']!r}, "
                 f"weights=Path(WEIGHTS), remap_keys={load['remap_keys']!r})",
                 f"model = build_model(resolved, img_size={load['img_size']!r}).module"]
    return top, body


def snippet(anatomy: Anatomy, cut: str, protocol, *, probe: str, split: str | None, examples_per_class: float,
            command: str) -> str:
    """Ready-to-run Python that fine-tunes the recommended model as recommended: the
    ``timm.create_model`` call that loads the same weights (see :func:`advisor.ranking.decision.anatomy.load_plan`), a new
    ``num_classes``-way head, ``requires_grad = False`` for every parameter up to ``cut``, SGD with
    Plested & Gedeon 2019's parameter groups (``protocol``: :func:`training_protocol`), and a loop
    over the probe's images read by :mod:`advisor.data.probe` (same images and class order as advisor
    used), in advisor's preprocessing. ``python snippet.py [EPOCHS]``; importing it runs nothing
    (``load_model()``, ``prepare(model)``, ``training_data()``, ``main(epochs)``)."""
    a, load = anatomy, anatomy.load
    if load["weights"] is None:
        raise AdvisorError(f"model '{a.model}' has no weights file to load", "only file-backed models get a snippet")
    top, body = _load_code(load)
    cfg = a.data_config
    chans = int(cfg["input_size"][0])
    spec = probe if probe.startswith("builtin:") else str(Path(probe).expanduser().resolve())
    frozen = tuple(a.frozen_prefixes[cut])
    what = ("everything but the new head (train only the head)" if cut == PRE_LOGITS
            else f"everything up to and including `{cut}`")
    transform = (f"create_transform(input_size={tuple(cfg['input_size'])!r}, interpolation={cfg.get('interpolation', 'bilinear')!r}, "
                 f"mean={tuple(cfg['mean'])!r}, std={tuple(cfg['std'])!r}, crop_pct={cfg.get('crop_pct', 1.0)!r}, "
                 f"crop_mode={cfg.get('crop_mode', 'center')!r}, is_training=False)")
    lines = [
        f"# Fine-tune {a.model} on {probe}, as `advisor {command}` recommends: freeze up to {cut},",
        f"# {count(a.frozen[cut])} parameters frozen, {count(a.trainable(cut))} trainable (of {count(a.total)}).",
        f"# Learning rates: Plested & Gedeon 2019 for {examples_per_class:.0f} examples per class. Run: python this_file.py [EPOCHS]",
        "import sys", "", "import timm", "import torch",
    ]
    if top:
        lines += [""] + top
    lines += [
        "",
        f"MODEL_ID = {a.model!r}",
        f"WEIGHTS = {load['weights']!r}",
        f"PROBE = {spec!r}  # read with advisor.data.probe: the images and class order advisor scored",
        f"SPLIT = {split!r}",
        f"NUM_CLASSES = {a.num_classes}",
        f"# modules whose parameters stay frozen: {what}",
        f"FROZEN = {frozen!r}",
        f"LR_HEAD, LR_PRETRAINED = {protocol.lr!r}, {protocol.lr_transferred!r}  # Plested & Gedeon 2019: new layers, transferred layers",
        f"DECAY_EPOCHS = {protocol.decay_epochs}  # then both x 0.1 (Plested & Gedeon 2019, Table 2)",
        f"EPOCHS = {protocol.epochs}",
        f"BATCH_SIZE = {protocol.batch_size}",
        "", "",
        "def load_model():",
        '    """The pretrained weights advisor scored, with a new NUM_CLASSES-way head."""',
    ]
    lines += [("    " + s) if s else "" for s in body]
    lines += [
        "    model.reset_classifier(NUM_CLASSES)",
        "    return model",
        "", "",
        "def is_frozen(name):",
        '    return any(name == p or name.startswith(p + ".") for p in FROZEN)',
        "", "",
        "def prepare(model):",
        '    """Freeze FROZEN; parameter groups: the new head at LR_HEAD, the other trainable layers at LR_PRETRAINED."""',
        "    for name, p in model.named_parameters():",
        "        p.requires_grad = not is_frozen(name)",
        "    head = list(model.get_classifier().parameters())",
        "    rest = [p for p in model.parameters() if p.requires_grad and all(p is not h for h in head)]",
        '    groups = [{"params": head, "lr": LR_HEAD}]',
        "    if rest:",
        '        groups.append({"params": rest, "lr": LR_PRETRAINED})',
        "    return groups",
        "", "",
        "def training_data():",
        "    from timm.data import create_transform",
        "",
        "    from advisor.data.probe import load_probe",
        "",
        "    probe = load_probe(PROBE, split=SPLIT)",
        f"    transform = {transform}",
        "",
        "    class Images(torch.utils.data.Dataset):",
        "        def __len__(self):",
        "            return len(probe)",
        "",
        "        def __getitem__(self, i):",
        f"            return transform(probe.load_image(i).convert({'L' if chans == 1 else 'RGB'!r})), int(probe.labels[i])",
        "",
        "    return Images()",
        "", "",
        "def main(epochs=EPOCHS):",
        '    device = "cuda" if torch.cuda.is_available() else "cpu"',
        "    model = load_model().to(device)",
        f"    optimizer = torch.optim.SGD(prepare(model), momentum={protocol.momentum!r}, weight_decay={protocol.weight_decay!r})",
        "    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0 if epoch < DECAY_EPOCHS else 0.1)",
        "    data = training_data()",
        "    loader = torch.utils.data.DataLoader(data, batch_size=BATCH_SIZE, shuffle=True, drop_last=len(data) > BATCH_SIZE)",
        "    for epoch in range(epochs):",
        "        model.train()",
        "        for name, module in model.named_modules():",
        "            if name and is_frozen(name):",
        "                module.eval()  # frozen BatchNorm layers keep their pretrained statistics",
        "        seen, correct, total = 0, 0, 0.0",
        "        for x, y in loader:",
        "            x, y = x.to(device), y.to(device)",
        "            logits = model(x)",
        "            loss = torch.nn.functional.cross_entropy(logits, y)",
        "            optimizer.zero_grad()",
        "            loss.backward()",
        "            optimizer.step()",
        "            total += loss.item() * len(y)",
        "            correct += (logits.argmax(1) == y).sum().item()",
        "            seen += len(y)",
        "        scheduler.step()",
        '        print(f"epoch {epoch + 1}/{epochs}: loss {total / seen:.4f}, train accuracy {correct / seen:.3f}")',
        "    return model",
        "", "",
        'if __name__ == "__main__":',
        "    main(int(sys.argv[1]) if len(sys.argv) > 1 else EPOCHS)",
    ]
    return "\n".join(lines) + "\n"
