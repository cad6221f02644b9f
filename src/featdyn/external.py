"""Models from outside featdyn, wrapped into `Staged` chains (SPEC.md notation `f = f_K ∘ … ∘ f_1`).

A model name with a colon names a factory of a plain `nn.Module`:

- `package.module:factory` — an importable callable;
- `path/to/net.py:factory` — a callable defined in a Python file;
- `torchvision:<name>` — any torchvision classification model, always built with `weights=None`
  (pass `weights_file` for a local state-dict file).

The factory is called with the model options as keyword arguments, plus `num_classes` when its
signature takes it (torchvision builders take it through `**kwargs`). The module is then cut into
stages in one of two ways:

- `stages`: a module map, e.g. `[[conv1, bn1, relu, maxpool], layer1, layer2, layer3, layer4,
  [avgpool, flatten, fc]]`; each stage applies the listed submodules in order (`flatten` is
  `torch.flatten(x, 1)` unless the model has a submodule of that name);
- `split_at`: split points of the forward graph traced by `torch.fx` — module paths (cut after that
  module's call) or node names; the graph between consecutive points becomes one stage, so functional
  operations and parameters owned by parent modules (a ViT's class token) are kept.

Common torchvision families have a built-in map (`default_stage_map`). Every stage keeps the original
module names below its prefix: the original key `layer1.0.conv1.weight` of stage 1 is
`stages.1.layer1.0.conv1.weight` (`ExternalStaged.key_map`), so the user's own state dicts load into
the wrapped model. On a seeded probe batch the chain must reproduce the model's own `forward`
exactly (`torch.equal`, eval mode); otherwise `StageMapError` names the first module or stage where
the two diverge.

The end of the module holds what reads state dicts from outside (files, wrapper dicts, prefixes) and
the per-checkpoint loop that replaces `vmap` where a model cannot be batched over its weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import os
import pickle
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from featdyn.models import Staged

FLATTEN = "flatten"
"""Pseudo-module of a module map: `torch.flatten(x, 1)` (when the model has no module of this name)."""

PROBE_BATCH = 2
PROBE_SEED = 0

StageMap = Sequence[str | Sequence[str]]


class StageMapError(ValueError):
    """A stage map that does not describe the model's forward pass."""


class ExternalModelError(ValueError):
    """A model factory that cannot be found or called."""


class StateDictError(ValueError):
    """A state-dict file that cannot be read or does not fit the model."""


# --- resolving and calling the factory -----------------------------------------------------------


def is_external(name: str) -> bool:
    """Whether a model name names a factory from outside (`module:factory`, `file.py:factory`)."""
    return ":" in name


def resolve_factory(name: str) -> Callable[..., nn.Module]:
    """The callable behind `package.module:factory`, `path/to/net.py:factory` or `torchvision:<name>`."""
    where, sep, attr = name.rpartition(":")
    if not sep or not where or not attr:
        raise ExternalModelError(
            f"model {name!r} is not of the form 'package.module:factory', 'path/to/net.py:factory' "
            "or 'torchvision:<name>'"
        )
    if where == "torchvision":
        return _torchvision_builder(attr)
    module = _load_file_module(Path(where)) if _is_file_path(where) else _import_module(where, name)
    factory = getattr(module, attr, None)
    if not callable(factory):
        public = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise ExternalModelError(f"{where} has no callable {attr!r} (model {name!r}); it defines: {public}")
    return factory


def _is_file_path(where: str) -> bool:
    return where.endswith(".py") or "/" in where or os.sep in where


def _import_module(where: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(where)
    except ImportError as err:
        raise ExternalModelError(
            f"cannot import {where!r} for model {name!r} ({err}); install the package or put its folder "
            "on PYTHONPATH, or name the file instead: 'path/to/net.py:factory'"
        ) from err


def _load_file_module(path: Path) -> ModuleType:
    """Import a Python file once per absolute path, under a name derived from that path."""
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ExternalModelError(f"model file {path} does not exist")
    module_name = f"featdyn_external_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before exec: dataclasses and pickling look the module up
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise ExternalModelError(f"cannot import model file {path}: {type(err).__name__}: {err}") from err
    return module


def _torchvision_builder(model_name: str) -> Callable[..., nn.Module]:
    import torchvision.models as tvm

    names = tvm.list_models(module=tvm)  # classification models only
    if model_name not in names:
        raise ExternalModelError(
            f"torchvision has no classification model {model_name!r}; available: {names}"
        )

    def build(num_classes: int = 1000, **options: Any) -> nn.Module:
        if options.get("weights") is not None:
            raise ExternalModelError(
                "torchvision models are built with weights=None; give a local state-dict file as "
                "`weights_file`"
            )
        options.pop("weights", None)
        return tvm.get_model(model_name, weights=None, num_classes=num_classes, **options)

    return build


def instantiate(
    factory: Callable[..., nn.Module], num_classes: int, options: Mapping[str, Any], name: str
) -> nn.Module:
    """Call the factory with `options`, adding `num_classes` when its signature takes that keyword."""
    kwargs = dict(options)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins and C extensions without a signature
        params = {}
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "num_classes" in params or (takes_kwargs and _is_torchvision_factory(factory)):
        kwargs.setdefault("num_classes", num_classes)
    try:
        model = factory(**kwargs)
    except TypeError as err:
        raise ExternalModelError(f"cannot call the factory of model {name!r} with {kwargs}: {err}") from err
    if not isinstance(model, nn.Module):
        raise ExternalModelError(
            f"the factory of model {name!r} returned {type(model).__name__}, not nn.Module"
        )
    return model


def _is_torchvision_factory(factory: Callable[..., Any]) -> bool:
    return getattr(factory, "__module__", "").startswith("torchvision.models")


# --- stages from a module map --------------------------------------------------------------------


class ModuleChain(nn.Module):
    """One stage of a module map: the listed submodules of the original model applied in order, each
    kept under its original (dotted) path, so the stage's state-dict keys are the original ones."""

    def __init__(self, root: nn.Module, paths: Sequence[str]):
        super().__init__()
        self.paths = tuple(paths)
        self.pseudo = tuple(p == FLATTEN and not _has_module(root, p) for p in self.paths)
        for path, pseudo in zip(self.paths, self.pseudo):
            if not pseudo:
                _attach(self, path, root.get_submodule(path))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for path, pseudo in zip(self.paths, self.pseudo):
            x = torch.flatten(x, 1) if pseudo else self.get_submodule(path)(x)
        return x

    def extra_repr(self) -> str:
        return ", ".join(self.paths)


def _has_module(root: nn.Module, path: str) -> bool:
    try:
        root.get_submodule(path)
    except AttributeError:
        return False
    return True


def _attach(container: nn.Module, path: str, module: nn.Module) -> None:
    """Register `module` at the dotted `path` below `container`, creating empty parents as needed."""
    *parents, leaf = path.split(".")
    for name in parents:
        if name not in container._modules:
            container.add_module(name, nn.Module())
        container = container._modules[name]
    container.add_module(leaf, module)


def normalise_stage_map(stage_map: StageMap) -> list[list[str]]:
    """Every stage as a list of module paths (a bare string is a one-module stage)."""
    if isinstance(stage_map, str) or not stage_map:
        raise StageMapError(f"a stage map is a non-empty list of stages, not {stage_map!r}")
    return [[s] if isinstance(s, str) else [str(p) for p in s] for s in stage_map]


def module_stages(model: nn.Module, stage_map: StageMap) -> list[ModuleChain]:
    """The stages of a module map, after checking that every path exists and no two overlap."""
    stages = normalise_stage_map(stage_map)
    children = [name for name, _ in model.named_children()]
    seen: dict[str, int] = {}
    for i, paths in enumerate(stages):
        if not paths:
            raise StageMapError(f"stage {i} of the stage map is empty")
        for path in paths:
            if path == FLATTEN and not _has_module(model, path):
                continue
            if not _has_module(model, path):
                raise StageMapError(
                    f"stage {i} names module {path!r}, which the model ({type(model).__name__}) does not "
                    f"have; its top-level modules are {children}"
                )
            for other, j in seen.items():
                if _overlaps(path, other) and (path != other or _has_state(model.get_submodule(path))):
                    raise StageMapError(
                        f"module {path!r} (stage {i}) overlaps {other!r} (stage {j}): every module with "
                        "parameters or buffers belongs to exactly one stage"
                    )
            seen[path] = i
    return [ModuleChain(model, paths) for paths in stages]


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _has_state(module: nn.Module) -> bool:
    return bool(module.state_dict())


# --- stages from split points of the traced forward graph -------------------------------------------


class _SplitTracer(fx.Tracer):
    """Every module is a leaf except those that contain a split module: the graph stays as coarse
    as the split points allow, and code inside leaf modules is never traced."""

    def __init__(self, traced_through: set[str]):
        super().__init__()
        self.traced_through = traced_through

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name not in self.traced_through


def trace(model: nn.Module, split_modules: Sequence[str] = ()) -> fx.Graph:
    """The forward graph with `split_modules` (and every module outside their parents) as leaves.

    The graph is traced in train and in eval mode; if the two differ, the traced code reads
    `self.training` and one graph cannot serve both, so the model is rejected.
    """
    through = {".".join(p.split(".")[:i]) for p in split_modules for i in range(len(p.split(".")))}
    concrete = _default_arguments(model)
    was_training = model.training
    graphs = []
    try:
        for mode in (True, False):
            model.train(mode)
            try:
                graphs.append(_SplitTracer(through).trace(model, concrete_args=concrete))
            except Exception as err:
                raise StageMapError(
                    f"torch.fx cannot trace {type(model).__name__} ({type(err).__name__}: {err}); "
                    "give a module map (`stages`) instead of split points"
                ) from err
    finally:
        model.train(was_training)
    for graph in graphs:
        _drop_fixed_arguments(graph)
        inputs = [n.target for n in graph.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise StageMapError(
                f"the forward of {type(model).__name__} takes the inputs {inputs}, not one tensor"
            )
    codes = [fx.GraphModule(model, g).code for g in graphs]
    if codes[0] != codes[1]:
        raise StageMapError(
            f"the traced forward of {type(model).__name__} differs between train and eval mode (it reads "
            "self.training outside its leaf modules); give a module map (`stages`) instead"
        )
    return graphs[1]


def _default_arguments(model: nn.Module) -> dict[str, Any]:
    """Forward arguments after the input, fixed at their defaults for tracing."""
    params = list(inspect.signature(model.forward).parameters.values())[1:]
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _drop_fixed_arguments(graph: fx.Graph) -> None:
    """Remove the placeholders of arguments fixed at their defaults and the checks that use them:
    stages are called with the input alone."""
    for placeholder in [n for n in graph.nodes if n.op == "placeholder"][1:]:
        doomed, stack = set(), [placeholder]
        while stack:
            node = stack.pop()
            if node not in doomed:
                doomed.add(node)
                stack.extend(node.users)
        if any(n.op == "output" for n in doomed):
            raise StageMapError(f"the model's output depends on the forward argument {placeholder.target!r}")
        for node in reversed(list(graph.nodes)):
            if node in doomed:
                graph.erase_node(node)


def traced_stages(model: nn.Module, split_at: Sequence[str]) -> list[fx.GraphModule]:
    """Consecutive pieces of the traced forward graph, cut after each split point.

    A split point is a module path (cut after its call) or a node name of the traced graph. Exactly
    one value may flow across each cut, and each parameter or buffer must be used in one piece only.
    """
    if isinstance(split_at, str) or not split_at:
        raise StageMapError(f"split_at is a non-empty list of module paths or node names, not {split_at!r}")
    split_modules = [p for p in split_at if _has_module(model, p)]
    graph = trace(model, split_modules)
    nodes = list(graph.nodes)
    cuts = [_split_node(graph, point, point in split_modules) for point in split_at]
    order = [nodes.index(c) for c in cuts]
    if order != sorted(set(order)):
        ranked = [split_at[i] for i in sorted(range(len(cuts)), key=order.__getitem__)]
        raise StageMapError(f"split points are not in the order of the forward pass: {ranked}")
    segment = _assign_segments(nodes, cuts)
    _check_segments(model, nodes, cuts, segment)
    _check_single_crossing(nodes, cuts, segment)
    stages = [_segment_module(model, nodes, cuts, segment, s) for s in range(len(cuts) + 1)]
    for stage in stages:
        _copy_buffer_persistence(stage, model)
    return stages


def _split_node(graph: fx.Graph, point: str, is_module: bool) -> fx.Node:
    if is_module:
        calls = [n for n in graph.nodes if n.op == "call_module" and n.target == point]
        if len(calls) != 1:
            raise StageMapError(
                f"split point {point!r} is called {len(calls)} times in the forward pass; a split module "
                "must run exactly once"
            )
        return calls[0]
    for node in graph.nodes:
        if node.name == point and node.op not in ("placeholder", "output", "get_attr"):
            return node
    names = [n.name for n in graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
    raise StageMapError(
        f"split point {point!r} is neither a module of the model nor a node of its traced graph; "
        f"nodes: {names}"
    )


def _assign_segments(nodes: list[fx.Node], cuts: list[fx.Node]) -> dict[fx.Node, int]:
    """Segment of every node: the number of cuts before it; a get_attr goes with its users."""
    segment, current, cut_set = {}, 0, set(cuts)
    for node in nodes:
        segment[node] = current
        if node in cut_set:
            current += 1
    for node in nodes:
        if node.op == "get_attr":
            used_in = {segment[u] for u in node.users}
            if len(used_in) > 1:
                raise StageMapError(
                    f"{node.target!r} is used by stages {sorted(used_in)}: a parameter or buffer must "
                    "belong to one stage; move the split points so that its users share a stage"
                )
            segment[node] = used_in.pop() if used_in else segment[node]
    return segment


def _check_segments(model: nn.Module, nodes: list[fx.Node], cuts: list[fx.Node], segment: Mapping) -> None:
    """No stage is empty, and a module with parameters or buffers runs in one stage only."""
    stages_of: dict[str, set[int]] = {}
    for node in nodes:
        if node.op == "call_module":
            stages_of.setdefault(node.target, set()).add(segment[node])
    for target, used in stages_of.items():
        if len(used) > 1 and _has_state(model.get_submodule(target)):
            raise StageMapError(f"module {target!r} with parameters or buffers runs in stages {sorted(used)}")
    for s in range(len(cuts) + 1):
        if not any(segment[n] == s and n.op.startswith("call_") for n in nodes):
            raise StageMapError(
                f"stage {s} of the split points is empty (split points: {[c.name for c in cuts]})"
            )


def _check_single_crossing(nodes: list[fx.Node], cuts: list[fx.Node], segment: Mapping[fx.Node, int]) -> None:
    """Only the cut node of a segment may be used outside it, and only by the next segment."""
    for node in nodes:
        if node.op in ("get_attr", "output"):
            continue
        s = segment[node]
        is_cut = s < len(cuts) and node is cuts[s]
        for user in node.users:
            t = segment[user]
            if t == s or (is_cut and t == s + 1):
                continue
            raise StageMapError(
                f"value {node.name!r} of stage {s} is also used by {user.name!r} in stage {t}: a stage "
                "passes exactly one tensor to the next; choose split points where only one value flows "
                "(e.g. after a whole residual block)"
            )


def _segment_module(
    model: nn.Module, nodes: list[fx.Node], cuts: list[fx.Node], segment: Mapping[fx.Node, int], s: int
) -> fx.GraphModule:
    graph = fx.Graph()
    x = graph.placeholder("x")
    env: dict[fx.Node, fx.Node] = {}
    start = next(n for n in nodes if n.op == "placeholder") if s == 0 else cuts[s - 1]
    env[start] = x
    for node in nodes:
        if segment[node] == s and node.op not in ("placeholder", "output") and node not in env:
            env[node] = graph.node_copy(node, env.__getitem__)
    if s < len(cuts):
        graph.output(env[cuts[s]])
    else:
        (output,) = [n for n in nodes if n.op == "output"]
        graph.output(fx.map_arg(output.args[0], env.__getitem__))
    graph.lint()
    return fx.GraphModule(model, graph, class_name=f"TracedStage{s}")


def _copy_buffer_persistence(stage: nn.Module, model: nn.Module) -> None:
    """GraphModule registers every copied buffer as persistent; keep the original's choice."""
    for name, _ in list(stage.named_buffers()):
        owner_path, _, leaf = name.rpartition(".")
        original_owner = model.get_submodule(owner_path)
        if leaf in original_owner._non_persistent_buffers_set:
            stage.get_submodule(owner_path)._non_persistent_buffers_set.add(leaf)


# --- the wrapped model -----------------------------------------------------------------------------


class ExternalStaged(Staged):
    """A `Staged` chain cut out of a plain module; `key_map` maps original state-dict keys to
    `stages.<i>.<original key>`; each stage is named by the modules it runs (`stage_names`)."""

    def __init__(
        self, stages: Sequence[nn.Module], key_map: Mapping[str, str], stage_map: Mapping[str, list]
    ):
        super().__init__(stages, stage_names(stages))
        self.key_map = dict(key_map)
        self.stage_map = dict(stage_map)  # {"stages": module map} or {"split_at": split points}

    def to_staged(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Original keys → this model's keys."""
        return {self.key_map[k]: v for k, v in state.items()}

    def to_original(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This model's keys → the original model's keys."""
        inverse = {v: k for k, v in self.key_map.items()}
        return {inverse[k]: v for k, v in state.items()}

    def load_original_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.load_state_dict(self.to_staged(state))


def stage_names(stages: Sequence[nn.Module]) -> list[str]:
    """A name per stage from the original modules it runs: `layer1.0`, or `conv1…maxpool` for several
    (first…last); `stage<i>` for a stage that runs no module; made distinct by `#<i>` if need be."""
    names = []
    for i, stage in enumerate(stages):
        if isinstance(stage, ModuleChain):
            paths = [p for p, pseudo in zip(stage.paths, stage.pseudo) if not pseudo] or list(stage.paths)
        else:
            paths = list(dict.fromkeys(n.target for n in stage.graph.nodes if n.op == "call_module"))
        name = paths[0] if len(paths) == 1 else f"{paths[0]}…{paths[-1]}" if paths else f"stage{i}"
        names.append(name)
    return [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]


def staged_key_map(original: nn.Module, stages: Sequence[nn.Module]) -> dict[str, str]:
    """original key → `stages.<i>.<key>`; every original key must lie in exactly one stage."""
    owners: dict[str, list[int]] = {}
    for i, stage in enumerate(stages):
        for key in stage.state_dict():
            owners.setdefault(key, []).append(i)
    original_keys = list(original.state_dict())
    shared = {k: v for k, v in owners.items() if len(v) > 1}
    if shared:
        key, where = next(iter(shared.items()))
        raise StageMapError(f"{key!r} belongs to stages {where}: every parameter belongs to one stage")
    missing = [k for k in original_keys if k not in owners]
    if missing:
        modules = sorted({k.rpartition(".")[0] or k for k in missing})
        raise StageMapError(
            f"the stage map leaves out modules with parameters or buffers: {modules} ({len(missing)} keys, "
            f"e.g. {missing[0]!r}); list them in a stage, or use split points (`split_at`) if they are "
            "parameters used directly in a parent's forward"
        )
    return {k: f"stages.{owners[k][0]}.{k}" for k in original_keys}


def wrap(
    model: nn.Module,
    sample_shape: Sequence[int],
    stages: StageMap | None = None,
    split_at: Sequence[str] | None = None,
    verify: bool = True,
) -> ExternalStaged:
    """Cut `model` into a Staged chain by a module map or split points (or its family's default map)."""
    if stages is not None and split_at is not None:
        raise StageMapError("give either `stages` (a module map) or `split_at` (split points), not both")
    if stages is None and split_at is None:
        default = default_stage_map(model)
        if default is None:
            raise StageMapError(
                f"there is no built-in stage map for {type(model).__name__}: give `stages` (a module map "
                f"over its modules {[n for n, _ in model.named_children()]}) or `split_at` (split points)"
            )
        stages, split_at = default.get("stages"), default.get("split_at")
    if stages is not None:
        parts, stage_map = module_stages(model, stages), {"stages": normalise_stage_map(stages)}
    else:
        parts, stage_map = traced_stages(model, split_at), {"split_at": list(split_at)}
    if len(parts) < 2:
        raise StageMapError("a stage map needs at least two stages (a split depth cuts between stages)")
    staged = ExternalStaged(parts, staged_key_map(model, parts), stage_map)
    if verify:
        verify_staged(model, staged, probe_input(sample_shape))
    return staged


def build_external(
    name: str,
    sample_shape: Sequence[int],
    num_classes: int,
    *,
    stages: StageMap | None = None,
    split_at: Sequence[str] | None = None,
    weights_file: str | os.PathLike | None = None,
    verify: bool = True,
    **factory_options: Any,
) -> ExternalStaged:
    """Build an outside model by name (see the module docstring) and wrap it into a checked chain."""
    model = instantiate(resolve_factory(name), num_classes, factory_options, name)
    if weights_file is not None:
        model.load_state_dict(load_model_state(weights_file, model))
    staged = wrap(model, sample_shape, stages, split_at, verify)
    if verify:
        _check_outputs(staged, sample_shape, num_classes, name)
    return staged


def _check_outputs(staged: Staged, sample_shape: Sequence[int], num_classes: int, name: str) -> None:
    with torch.no_grad(), _eval_mode(staged):
        shape = tuple(staged(probe_input(sample_shape, staged)).shape)
    if shape != (PROBE_BATCH, num_classes):
        raise ExternalModelError(
            f"model {name!r} maps a batch of {PROBE_BATCH} inputs of shape {tuple(sample_shape)} to {shape}, "
            f"not ({PROBE_BATCH}, {num_classes}) logits for the dataset's {num_classes} classes; pass the "
            "number of classes through the model options (e.g. num_classes) or make the factory accept it"
        )


def probe_input(sample_shape: Sequence[int], like: nn.Module | None = None) -> torch.Tensor:
    """A seeded standard-normal batch (its own generator: the global RNG stays untouched)."""
    g = torch.Generator().manual_seed(PROBE_SEED)
    x = torch.randn(PROBE_BATCH, *sample_shape, generator=g)
    ref = next(iter(like.parameters()), None) if like is not None else None
    return x if ref is None else x.to(ref.device, ref.dtype)


# --- verification ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; every submodule's own previous mode afterwards."""
    modes = [(m, m.training) for mod in modules for m in mod.modules()]
    for mod in modules:
        mod.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def verify_staged(original: nn.Module, staged: ExternalStaged, x: torch.Tensor) -> None:
    """Raise `StageMapError` unless the chain reproduces `original.forward(x)` exactly (eval mode)."""
    x = x.to(next(iter(original.parameters()), x).device)
    with torch.no_grad(), _eval_mode(original, staged):
        expected = original(x)
        try:
            got = staged(x)
        except Exception as err:  # a wrong map feeds a module the wrong input
            raise StageMapError(_diagnose(original, staged, x, err)) from err
        if not isinstance(expected, torch.Tensor):
            raise StageMapError(
                f"{type(original).__name__}.forward returns {type(expected).__name__}, not a tensor of logits"
            )
        if not (got.shape == expected.shape and torch.equal(got, expected)):
            raise StageMapError(_diagnose(original, staged, x, None))


def _diagnose(original: nn.Module, staged: ExternalStaged, x: torch.Tensor, err: Exception | None) -> str:
    if all(isinstance(s, ModuleChain) for s in staged.stages):
        return _diagnose_module_map(original, staged, x, err)
    return _diagnose_traced(original, staged, x, err)


def _describe(a: Any, b: Any) -> str:
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return f"{type(a).__name__} instead of {type(b).__name__}"
    if a.shape != b.shape:
        return f"shape {tuple(a.shape)} instead of {tuple(b.shape)}"
    return f"max |difference| {(a.double() - b.double()).abs().max().item():.3g}"


def _same(a: Any, b: Any) -> bool:
    return (
        isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and a.shape == b.shape
        and torch.equal(a, b)
    )


class _Recorder:
    """Forward (pre-)hooks that record inputs and outputs of chosen modules and the call order."""

    def __init__(self, root: nn.Module, recorded: Sequence[str], order: bool):
        self.calls: dict[str, list[list[Any]]] = {p: [] for p in recorded}
        self.sequence: list[tuple[str, int]] = []  # (module path, call index) of recorded modules
        self.started: list[str] = []  # every module that started, in order (order=True)
        self.handles = []
        for path in recorded:
            module = root.get_submodule(path)
            self.handles.append(module.register_forward_pre_hook(self._pre(path)))
            self.handles.append(module.register_forward_hook(self._post(path)))
        if order:
            for path, module in root.named_modules():
                if path:
                    self.handles.append(module.register_forward_pre_hook(self._start(path)))

    def _start(self, path: str):
        def hook(module, args):
            self.started.append(path)

        return hook

    def _pre(self, path: str):
        def hook(module, args):
            value = args[0].clone() if args and isinstance(args[0], torch.Tensor) else None
            self.calls[path].append([value, None])
            self.sequence.append((path, len(self.calls[path]) - 1))

        return hook

    def _post(self, path: str):
        def hook(module, args, output):
            self.calls[path][-1][1] = output.clone() if isinstance(output, torch.Tensor) else output

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _diagnose_module_map(
    original: nn.Module, staged: ExternalStaged, x: torch.Tensor, err: Exception | None
) -> str:
    """Name the first listed module whose input or output differs from the model's own forward."""
    listed = [
        (i, p) for i, s in enumerate(staged.stages) for p, pseudo in zip(s.paths, s.pseudo) if not pseudo
    ]
    paths = list(dict.fromkeys(p for _, p in listed))
    reference = _Recorder(original, paths, order=True)
    try:
        original(x)
    finally:
        reference.remove()
    replay = _Recorder(original, paths, order=False)
    try:
        staged(x)
    except Exception:
        pass  # the error is reported below, at the module that received the wrong input
    finally:
        replay.remove()
    stage_of = {p: i for i, p in listed}
    previous = None
    for path, call in replay.sequence:
        got_in, got_out = replay.calls[path][call]
        where = f"module {path!r} (stage {stage_of[path]})"
        if call >= len(reference.calls[path]):
            return f"{where} does not run (that often) in the model's own forward. {_ADVICE}"
        want_in, want_out = reference.calls[path][call]
        if not _same(got_in, want_in):
            gap = _between(reference.started, previous, path, paths)
            return (
                f"the stage map diverges from the model's forward at {where}: its input has "
                f"{_describe(got_in, want_in)} in the model's own forward. {gap} {_ADVICE}"
            )
        if got_out is None:
            return f"{where} raised {type(err).__name__}: {err} on the input it gets in the model's forward"
        if not _same(got_out, want_out):
            return (
                f"{where} gives a different output for the same input ({_describe(got_out, want_out)}): "
                "it is not deterministic, or it depends on more than its input"
            )
        previous = path
    if err is not None:
        return f"the stage chain raised {type(err).__name__}: {err}. {_ADVICE}"
    return (
        f"every listed module matches the model's forward, but the output after the last one ({previous!r}) "
        f"differs: the model's forward computes more after it (a functional operation?). {_ADVICE}"
    )


_ADVICE = (
    "Fix the module map (`stages`) so that it lists, in order, every module the model's forward applies, "
    "with `flatten` for torch.flatten(x, 1), or give split points (`split_at`) of the traced graph, which "
    "keep functional operations."
)


def _between(started: list[str], previous: str | None, current: str, listed: Sequence[str]) -> str:
    """What the model's forward runs between the `previous` listed module and `current`."""
    first: dict[str, int] = {}
    for i, path in enumerate(started):
        first.setdefault(path, i)
    end = first.get(current, len(started))
    start = first.get(previous, -1) if previous is not None else -1
    if previous is not None and start > end:
        return (
            f"In the model's forward {current!r} runs before {previous!r}: the map lists them out of order."
        )
    inside = tuple(p + "." for p in listed)
    ran = [
        p
        for p in dict.fromkeys(started[start + 1 : end])
        if not p.startswith(inside)  # runs inside a listed module
        and not any(q.startswith(p + ".") for q in listed)  # a parent of listed modules
    ]
    top = [p for p in ran if not any(p.startswith(q + ".") for q in ran)]
    after = f"after {previous!r}" if previous else "at the start"
    later = [p for p in top if p in listed and listed.index(p) > listed.index(current)]
    again = [p for p in top if p in listed and listed.index(p) < listed.index(current)]
    if later:
        return (
            f"The model's forward runs {later} {after} and before {current!r}, but the map lists them "
            "later: it lists modules out of order."
        )
    if again:
        return (
            f"The model's forward runs {again} again {after} and before {current!r} (it calls them more "
            "than once); list them again there, or keep their parent module whole."
        )
    if top:
        return f"The model's forward runs {top} {after} and before {current!r}; the map does not list them."
    return (
        f"No module runs {after} and before {current!r} in the model's forward, so the forward of the "
        "model or of a parent module applies a functional operation there (torch.flatten, F.relu, a "
        "residual addition, pooling, ...)."
    )


def _diagnose_traced(
    original: nn.Module, staged: ExternalStaged, x: torch.Tensor, err: Exception | None
) -> str:
    """Name the first traced stage whose output differs from the split module's output in forward."""
    points = list(staged.stage_map["split_at"])
    outputs: dict[str, torch.Tensor] = {}

    def record(point: str):
        return lambda module, args, output: outputs.setdefault(point, output.clone())

    handles = [
        original.get_submodule(p).register_forward_hook(record(p)) for p in points if _has_module(original, p)
    ]
    try:
        expected = original(x)
    finally:
        for h in handles:
            h.remove()
    advice = (
        "the traced graph does not reproduce the model's forward (input-dependent control flow or state "
        "fixed at trace time?); give a module map (`stages`) instead"
    )
    h = x
    for i, stage in enumerate(staged.stages):
        try:
            h = stage(h)
        except Exception as stage_err:
            return f"traced stage {i} raised {type(stage_err).__name__}: {stage_err}; {advice}"
        point = points[i] if i < len(points) else None
        if point in outputs and not _same(h, outputs[point]):
            return f"traced stage {i} (up to {point!r}) gives {_describe(h, outputs[point])}: {advice}"
    return f"the output of the traced stages has {_describe(h, expected)}: {advice}"


# --- built-in stage maps for torchvision families ----------------------------------------------------


def default_stage_map(model: nn.Module) -> dict[str, list] | None:
    """The built-in stage map of a torchvision classification family (None for other models):
    `{"stages": module map}` or `{"split_at": split points}`."""
    import torchvision.models as tvm

    families: list[tuple[type, Callable[[nn.Module], dict[str, list]]]] = [
        (tvm.ResNet, _resnet_map),
        (tvm.VGG, _vgg_map),
        (tvm.AlexNet, _vgg_map),
        (tvm.SqueezeNet, _squeezenet_map),
        (tvm.MobileNetV2, _split_after_features),
        (tvm.MobileNetV3, _features_then("avgpool", FLATTEN, "classifier")),
        (tvm.EfficientNet, _features_then("avgpool", FLATTEN, "classifier")),
        (tvm.ConvNeXt, _features_then("avgpool", "classifier")),
        (tvm.SwinTransformer, _features_then("norm", "permute", "avgpool", "flatten", "head")),
        (tvm.RegNet, _regnet_map),
        (tvm.DenseNet, _densenet_map),
        (tvm.MNASNet, _mnasnet_map),
        (tvm.ShuffleNetV2, _shufflenet_map),
        (tvm.VisionTransformer, _vit_map),
    ]
    for cls, make in families:
        if type(model) is cls:
            return make(model)
    return None


def _children(model: nn.Module, path: str) -> list[str]:
    return [f"{path}.{name}" for name, _ in model.get_submodule(path).named_children()]


def _cut_after(model: nn.Module, paths: Sequence[str], last_of_group: tuple[type, ...]) -> list[list[str]]:
    """Consecutive groups of `paths`, each closed by a module of a `last_of_group` type."""
    groups: list[list[str]] = [[]]
    for path in paths:
        groups[-1].append(path)
        if isinstance(model.get_submodule(path), last_of_group):
            groups.append([])
    return [g for g in groups if g]


def _resnet_map(model: nn.Module) -> dict[str, list]:
    blocks = [b for layer in ("layer1", "layer2", "layer3", "layer4") for b in _children(model, layer)]
    return {"stages": [["conv1", "bn1", "relu", "maxpool"], *blocks, ["avgpool", FLATTEN, "fc"]]}


def _vgg_map(model: nn.Module) -> dict[str, list]:
    """Conv blocks up to each max-pool, then the classifier cut after each ReLU (VGG, AlexNet)."""
    convs = _cut_after(model, _children(model, "features"), (nn.MaxPool2d,))
    head = _cut_after(model, _children(model, "classifier"), (nn.ReLU,))
    return {"stages": [*convs, ["avgpool", FLATTEN, *head[0]], *head[1:]]}


def _squeezenet_map(model: nn.Module) -> dict[str, list]:
    convs = _cut_after(model, _children(model, "features"), (nn.MaxPool2d,))
    return {"stages": [*convs, ["classifier", FLATTEN]]}


def _features_then(*head: str) -> Callable[[nn.Module], dict[str, list]]:
    def make(model: nn.Module) -> dict[str, list]:
        return {"stages": [*_children(model, "features"), list(head)]}

    return make


def _split_after_features(model: nn.Module) -> dict[str, list]:
    return {"split_at": _children(model, "features")}


def _regnet_map(model: nn.Module) -> dict[str, list]:
    return {"stages": ["stem", *_children(model, "trunk_output"), ["avgpool", FLATTEN, "fc"]]}


def _densenet_map(model: nn.Module) -> dict[str, list]:
    """Stem (conv0 … pool0), each dense block and transition; the last stage adds norm5 + head."""
    features = _children(model, "features")
    return {"split_at": features[features.index("features.pool0") : -1]}


def _mnasnet_map(model: nn.Module) -> dict[str, list]:
    """Stem (layers 0-7), each of the six block stacks; the last stage adds the final conv + head."""
    return {"split_at": _children(model, "layers")[7:14]}


def _shufflenet_map(model: nn.Module) -> dict[str, list]:
    blocks = [b for stage in ("stage2", "stage3", "stage4") for b in _children(model, stage)]
    return {"split_at": ["maxpool", *blocks, "conv5"]}


def _vit_map(model: nn.Module) -> dict[str, list]:
    """Patch embedding + class token + position embedding, each encoder layer, then LN + head."""
    return {"split_at": ["encoder.dropout", *_children(model, "encoder.layers")]}


# --- state dicts from outside ----------------------------------------------------------------------

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
"""Keys of checkpoint dicts that hold the model's state dict (PyTorch Lightning, common scripts)."""


def read_state_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a state-dict file: `.safetensors`, or `torch.save` output read with
    `weights_only=True` and unwrapped from `state_dict` / `model_state_dict` / `model` entries."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise StateDictError(
            f"checkpoint file {path} holds objects that weights_only loading refuses (a pickled model or "
            f"custom classes): save `model.state_dict()` instead ({str(err).splitlines()[0]})"
        ) from err
    except Exception as err:
        raise StateDictError(f"cannot read checkpoint file {path}: {type(err).__name__}: {err}") from err
    return unwrap_state_dict(raw, path)


def unwrap_state_dict(obj: Any, source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint object: its tensors, or those of a wrapper entry."""
    if not isinstance(obj, Mapping):
        raise StateDictError(f"checkpoint file {source} holds a {type(obj).__name__}, not a state dict")
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), Mapping):
            return unwrap_state_dict(obj[key], source)
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise StateDictError(
            f"checkpoint file {source} holds a dict with keys {sorted(map(str, obj))[:10]} but no tensors "
            f"and none of the wrapper entries {list(WRAPPER_KEYS)}"
        )
    return tensors


def match_state_dict(
    raw: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], source: str | os.PathLike
) -> dict[str, torch.Tensor]:
    """`raw` in the key space of `reference`, after removing the key prefix that makes the keys match
    (`model.`, `module.` (DDP), `net.`, … — found, not guessed); shapes must agree, dtypes follow
    `reference`. BatchNorm step counters missing from `raw` are taken from `reference`."""
    required = _required(reference)
    prefix = _matching_prefix(raw, required)
    if prefix is None:
        raise StateDictError(_mismatch_message(raw, required, source))
    unexpected = [k for k in raw if k.startswith(prefix) and k[len(prefix) :] not in reference]
    if unexpected:
        raise StateDictError(
            f"checkpoint file {source} has keys the model does not have: {unexpected[:5]}"
            f"{' …' if len(unexpected) > 5 else ''} ({len(unexpected)} in all): is it the same architecture?"
        )
    out = {}
    for key, ref in reference.items():
        value = raw.get(prefix + key)
        if value is None:
            out[key] = ref.detach().clone()
            continue
        if value.shape != ref.shape:
            raise StateDictError(
                f"checkpoint file {source}: {prefix + key!r} has shape {tuple(value.shape)}, the model's "
                f"{key!r} has shape {tuple(ref.shape)}"
            )
        if value.is_floating_point() != ref.is_floating_point():
            raise StateDictError(
                f"checkpoint file {source}: {prefix + key!r} is {value.dtype}, the model's is {ref.dtype}"
            )
        out[key] = value.detach().to("cpu", ref.dtype)
    return out


def _matching_prefix(raw: Mapping[str, torch.Tensor], required: Sequence[str]) -> str | None:
    """The shortest prefix p with p + k in `raw` for every required key k (None if there is none)."""
    if not required:
        return ""
    anchor = required[0]
    candidates = {k[: len(k) - len(anchor)] for k in raw if k == anchor or k.endswith("." + anchor)}
    good = sorted((p for p in candidates if all(p + k in raw for k in required)), key=len)
    return good[0] if good else None


def _mismatch_message(
    raw: Mapping[str, torch.Tensor], required: Sequence[str], source: str | os.PathLike
) -> str:
    best = max(
        {k[: len(k) - len(r)] for r in required for k in raw if k == r or k.endswith("." + r)} | {""},
        key=lambda p: sum(p + k in raw for k in required),
    )
    missing = [k for k in required if best + k not in raw]
    return (
        f"checkpoint file {source} does not fit the model: it lacks {len(missing)} of the model's "
        f"{len(required)} parameters and buffers (e.g. {missing[:3]}"
        f"{f' under the prefix {best!r}' if best else ''}); the file's keys look like {list(raw)[:5]}"
    )


def load_model_state(path: str | os.PathLike, model: nn.Module) -> dict[str, torch.Tensor]:
    """A state-dict file as a state dict of `model` (its own keys; for `ExternalStaged`, the file may
    use the original model's keys)."""
    raw = read_state_file(path)
    own = model.state_dict()
    if not isinstance(model, ExternalStaged):
        return match_state_dict(raw, own, path)
    reference = {orig: own[key] for orig, key in model.key_map.items()}
    if (
        _matching_prefix(raw, _required(reference)) is None
        and _matching_prefix(raw, _required(own)) is not None
    ):
        return match_state_dict(raw, own, path)  # saved from the wrapped model itself
    return model.to_staged(match_state_dict(raw, reference, path))


def _required(reference: Mapping[str, torch.Tensor]) -> list[str]:
    """Keys a state-dict file must hold: all but BatchNorm step counters."""
    return [k for k in reference if not k.endswith("num_batches_tracked")]
