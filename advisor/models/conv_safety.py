"""Route 1x1 strided convolutions around a oneDNN crash in channels-last backward passes on CPU.

On the CPU build of torch 2.14.1 this project installs, the weight-gradient pass of a 1x1
convolution with stride > 1 on channels-last (NHWC) activations writes past a buffer in oneDNN: the
process dies with a segmentation fault (or ``free(): invalid next size`` / abort), e.g.
``nn.Conv2d(8, 16, 1, stride=2, bias=False)`` on ``[B, 8, 60, 60]``. oneDNN's tracker has the same
fault open (1x1 backward-weights in NHWC with fewer input channels than the kernel's channel block)
and reports that it can also hang or return wrong weight gradients. :func:`finetune.train
<advisor.validation.finetune.train>` moves every model to channels-last and trains it, so any model with such a
layer was exposed.

Findings (torch 2.14.1 CPU, one thread, each case in its own subprocess: ``y = conv(x)`` and
``y.backward(g)`` in channels-last, compared with a float64 NCHW reference on the same inputs,
tolerance 1e-4 relative to the largest reference value; batch 4, 16 output channels, groups 1,
padding 0, no bias, square ``H x H`` input, unless a row says otherwise):

=======  =======  ===============================  =================================  ======================
kernel   stride   in_channels                      other                              result
=======  =======  ===============================  =================================  ======================
1x1      1        1, 4, 8; 2-64 (19 values)(*)     H 60                               ok
1x1      2        2, 3, 4, 5, 8, 15                H 60 (output 30x30)                CRASH: SIGSEGV (15:
                                                                                      abort, ``free():
                                                                                      invalid next size``)
1x1      2        1, 16, 17, 32; 16-64 (9)(*)      H 60                               ok
1x1      2        8                                H 16, 29-33, 40, 48 (output <=24)  ok
1x1      2        8                                H 60, 64, 96                       CRASH
1x1      3        1-32 (10 values); 2-64 (19)(*)   H 60 (output 20x20)                ok
1x1      3        8                                H 90, 120 (output >= 30x30)        CRASH
1x1      2        8                                out_channels 1, 4, 8               CRASH
1x1      2        8                                out_channels 64                    ok
1x1      2        8                                batch 1, 16                        CRASH
1x1      2        8, 8, 16, 32                     groups 2, 8, 16, 4                 ok
1x1      2        8                                padding 1                          ok
3x3      1, 2, 3  1, 4, 8, 16                      padding 1                          ok
=======  =======  ===============================  =================================  ======================

(*) first sweep, several cases per process (restarted after a crash); not repeated one per process.

No case hung, and no completed case gave outputs or gradients outside tolerance (seven ``ok`` 1x1
stride > 1 cases rerun under glibc's malloc checking passed too). Crashes were seen only for 1x1, stride
> 1, 2 <= in_channels < 16, groups 1, no padding, output >= 30x30 and out_channels <= 16, at any
batch size. But the fault is a heap overrun whose outcome depends on the heap: ``in_channels = 4``,
stride 2, H 60 passed in one fresh process (a variant of the script allocating one tensor fewer)
and crashed in the others, and ``in_channels`` 2 and 3 passed in the first sweep, so a pass says
little about a neighbouring shape or another process.
The guard therefore covers the whole kind: **every** ``nn.Conv2d`` (or subclass) with a 1x1 kernel,
a stride > 1 in either direction and its weight on the CPU, whatever its channels, groups, padding,
input size or current memory format.

Each such layer is changed in place, keeping its parameters, buffers and ``state_dict()`` keys:

* ``subsample`` (plain ``nn.Conv2d`` forward, zero padding): ``conv.stride`` becomes ``(1, 1)`` and a
  forward pre-hook feeds it ``x[:, :, ::sh, ::sw]``. For a 1x1 kernel without padding this is the same
  arithmetic (the output pixel ``(i, j)`` reads only input ``(i*sh, j*sw)``; the input gradient is zero
  elsewhere, as before), and the stride-1 1x1 NHWC backward is not affected. Forward outputs on
  channels-last input were bitwise equal in every shape tested; on NCHW input oneDNN may pick a kernel
  with another summation order (differences of one float32 ulp, ~3e-7, seen).
* ``standard_layout`` (padding != 0, or a subclass with its own ``forward``): the layer runs in the
  standard contiguous layout: a pre-hook makes the input contiguous and gives the weight standard
  strides (PyTorch picks channels-last if *either* input or weight is channels-last; a ``[O, I, 1, 1]``
  weight after ``.to(memory_format=torch.channels_last)`` has strides ``(I, 1, I, I)`` and counts as
  channels-last), and a forward hook hands the output back in channels-last when the input came in
  that way. Outputs agree with the unguarded layer to float32 rounding (a different kernel).

This module imports torch only inside its functions.
"""

from __future__ import annotations

SUBSAMPLE = "subsample"
STANDARD_LAYOUT = "standard_layout"
_MARK = "_advisor_conv_guard"  # set on each guarded module: SUBSAMPLE or STANDARD_LAYOUT
_STEP = "_advisor_conv_guard_step"  # SUBSAMPLE: the original stride (sh, sw)
_RESTORE_CL = "_advisor_conv_guard_restore_cl"  # STANDARD_LAYOUT: last input was channels-last


def is_unsafe(conv) -> bool:
    """True when ``conv`` is an ``nn.Conv2d`` (or subclass) of the kind that can crash: 1x1 kernel,
    a stride > 1 in either direction and a weight on the CPU. A module already guarded, a non-conv
    module and a conv whose weight is not materialised yet (lazy) give False. Raises nothing."""
    import torch

    if not isinstance(conv, torch.nn.Conv2d) or getattr(conv, _MARK, None):
        return False
    weight = getattr(conv, "weight", None)
    if not isinstance(weight, torch.Tensor) or isinstance(weight, torch.nn.parameter.UninitializedParameter):
        return False
    return (tuple(conv.kernel_size) == (1, 1) and any(s > 1 for s in conv.stride)
            and weight.device.type == "cpu")


def guard_channels_last(model) -> list[str]:
    """Route every unsafe 1x1 strided ``Conv2d`` in ``model`` around the oneDNN NHWC backward fault.

    ``model``: a ``torch.nn.Module`` (the model itself may be the conv). Unsafe layers are those
    :func:`is_unsafe` accepts; each is changed in place (see the module docstring: ``subsample`` for a
    plain zero-padding conv, else ``standard_layout``). Parameters, buffers, ``state_dict()`` keys and
    the module tree are unchanged; forward outputs equal the unguarded layer's (bitwise for
    ``subsample`` layers on channels-last input in the shapes tested, otherwise to float32 rounding);
    inputs stay ``[N, C, H, W]`` (or unbatched ``[C, H, W]``) and output shapes are unchanged. Idempotent: a
    guarded layer is marked and skipped later, so a second call changes nothing and returns ``[]``.

    Returns the qualified names (``model.named_modules()``) of the layers changed by this call, in
    module order (``""`` for ``model`` itself). Raises ``TypeError`` if ``model`` is not an
    ``nn.Module``.
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"guard_channels_last expects a torch.nn.Module, got {type(model).__name__}")
    changed = []
    for name, module in model.named_modules():
        if not is_unsafe(module):
            continue
        if _subsample_is_exact(module):
            setattr(module, _STEP, tuple(int(s) for s in module.stride))
            module.stride = (1, 1)
            module.register_forward_pre_hook(_subsample_pre_hook)
            setattr(module, _MARK, SUBSAMPLE)
        else:
            _standard_weight(module)
            module.register_forward_pre_hook(_standard_layout_pre_hook)
            module.register_forward_hook(_standard_layout_post_hook)
            setattr(module, _MARK, STANDARD_LAYOUT)
        changed.append(name)
    return changed


def guarded_layers(model) -> dict[str, str]:
    """``{qualified name: "subsample" | "standard_layout"}`` for the layers of ``model`` (an
    ``nn.Module``) that :func:`guard_channels_last` has changed. Raises nothing for a module."""
    return {n: getattr(m, _MARK) for n, m in model.named_modules() if getattr(m, _MARK, None)}


def _subsample_is_exact(conv) -> bool:
    """Whether subsampling then a stride-1 conv is exactly ``conv``: ``Conv2d``'s own forward (a
    subclass might pad or read ``stride`` itself) and no padding (1x1 kernel, so dilation is moot)."""
    import torch

    cls = type(conv)
    if cls.forward is not torch.nn.Conv2d.forward or cls._conv_forward is not torch.nn.Conv2d._conv_forward:
        return False
    padding = conv.padding
    return padding == "valid" or (not isinstance(padding, str) and all(p == 0 for p in padding))


def _subsample_pre_hook(module, args):
    """Forward pre-hook of a ``subsample`` layer: ``x[N, C, H, W]`` -> ``x[:, :, ::sh, ::sw]``
    (``[N, C, ceil(H/sh), ceil(W/sw)]``, the original conv's output size). Other inputs pass as is."""
    x = args[0]
    sh, sw = getattr(module, _STEP)
    if getattr(x, "dim", None) is None or x.dim() < 3:
        return None
    return (x[..., ::sh, ::sw],) + tuple(args[1:])


def _standard_weight(conv) -> None:
    """Give ``conv.weight`` standard contiguous strides in place (same Parameter object and values)."""
    import torch

    w = conv.weight
    if w.stride() != _contiguous_strides(w.shape):
        with torch.inference_mode(False), torch.no_grad():
            w.data = w.data.clone(memory_format=torch.contiguous_format)


def _contiguous_strides(shape) -> tuple[int, ...]:
    strides, acc = [], 1
    for size in reversed(tuple(shape)):
        strides.append(acc)
        acc *= max(int(size), 1)
    return tuple(reversed(strides))


def _standard_layout_pre_hook(module, args):
    """Forward pre-hook of a ``standard_layout`` layer: input ``[N, C, H, W]`` made contiguous, weight
    given standard strides again when grad is enabled (a later ``.to(memory_format=torch.channels_last)``
    changes them)."""
    import torch

    x = args[0]
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        setattr(module, _RESTORE_CL, False)
        return None
    if torch.is_grad_enabled():  # only a backward pass is at risk; under no_grad/inference_mode leave the weight be
        _standard_weight(module)
    was_cl = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    setattr(module, _RESTORE_CL, was_cl)
    return (x.contiguous(),) + tuple(args[1:])


def _standard_layout_post_hook(module, args, output):
    """Forward hook of a ``standard_layout`` layer: the output goes back to channels-last when the
    input came in that way (a copy; values unchanged)."""
    import torch

    if getattr(module, _RESTORE_CL, False) and isinstance(output, torch.Tensor) and output.dim() == 4:
        return output.contiguous(memory_format=torch.channels_last)
    return None
