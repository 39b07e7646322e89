"""Modules: objects that own Parameters and sub-modules, with dotted names like PyTorch's.

Assigning a `Parameter` or a `Module` to an attribute registers it, so `named_parameters()` yields
`encoder.layer.0.attention.self.query.weight` for the tree a model builds. `state_dict()` maps those names
to NumPy arrays; `load_state_dict()` is a checked copy (`check_state`, the one check every loader makes)
that reports every missing, unexpected, mis-shaped and non-finite tensor in one error.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

import autograd.functional as F
from autograd.tensor import Tensor


class StateDictError(ValueError, KeyError):
    """Tensors that do not fit a model; the message lists every problem at once.

    Both a ValueError (bad data) and a KeyError (names that do not match), so either can be caught.
    """

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def check_state(expected: dict, tensors: dict, *, what: str, required=None, allow_unexpected: bool = False):
    """The one check every loader makes before copying tensors into a model.

    expected: {name: shape} of the parameters the tensors may go into; tensors: {name: array}.
    required: the names that must be present (default: all of `expected`). Raises StateDictError naming
    every missing, unexpected (unless allow_unexpected), mis-shaped, non-floating-point and non-finite
    (NaN / Inf) tensor: a wrong checkpoint must never load quietly.
    """
    required = expected if required is None else required
    missing = [k for k in required if k not in tensors]
    unexpected = [] if allow_unexpected else [k for k in tensors if k not in expected]
    mis_shaped, not_float, not_finite = [], [], []
    for k, v in tensors.items():
        if k not in expected:
            continue
        if tuple(np.shape(v)) != tuple(expected[k]):
            mis_shaped.append(f"{k}: checkpoint {tuple(np.shape(v))} vs model {tuple(expected[k])}")
        elif not np.issubdtype(np.asarray(v).dtype, np.floating):
            not_float.append(f"{k} ({np.asarray(v).dtype})")
        elif not np.isfinite(v).all():
            not_finite.append(k)
    problems = [f"{label} ({len(items)}): " + ", ".join(items) for label, items in (
        ("missing", missing), ("unexpected", unexpected), ("mis-shaped", mis_shaped),
        ("not floating point", not_float), ("NaN or Inf values", not_finite)) if items]
    if problems:
        raise StateDictError(f"{what} does not fit the model:\n  " + "\n  ".join(problems))


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates; requires a gradient unless frozen."""

    def __init__(self, data, requires_grad: bool = True):
        data = np.asarray(data)
        if not np.issubdtype(data.dtype, np.floating):
            raise TypeError(f"a Parameter must be floating point, got dtype {data.dtype}")
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype}, requires_grad={self.requires_grad})"


class Module:
    """Base class: subclasses create Parameters / Modules as attributes and define `forward`."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        # Replacing a Parameter by a Parameter (or a Module by a Module) keeps its place in the registry, so
        # swapping a sub-module leaves the order of named_parameters(), and of an optimizer's state, unchanged.
        if not isinstance(value, Parameter):
            self._parameters.pop(name, None)
        if not isinstance(value, Module):
            self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    # ---- traversal -------------------------------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        """Yield (dotted name, module) for self and every sub-module, depth first, in creation order."""
        yield prefix, self
        for name, module in self._modules.items():
            yield from module.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """Yield (dotted name, Parameter); a Parameter shared by two modules is yielded once.
        recurse=False: only this module's own parameters, not its sub-modules'."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, p in module._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{module_name}.{name}" if module_name else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def children(self):
        return list(self._modules.values())

    def named_children(self):
        """(attribute name, module) of the direct sub-modules, in registration order."""
        return list(self._modules.items())

    def get_submodule(self, path: str) -> Module:
        """The sub-module at a dotted path ("encoder.layer.0.output"); "" is self."""
        module = self
        for part in path.split(".") if path else ():
            if part not in module._modules:
                raise AttributeError(f"{type(module).__name__} has no sub-module {part!r} (looking up {path!r})")
            module = module._modules[part]
        return module

    def set_submodule(self, path: str, module: Module):
        """Put `module` at a dotted path in place of the one there (it keeps its place in the registry)."""
        parent, _, name = path.rpartition(".")
        owner = self.get_submodule(parent)
        if name not in owner._modules:
            raise AttributeError(f"{type(owner).__name__} has no sub-module {name!r} to replace (path {path!r})")
        setattr(owner, name, module)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # ---- modes and dtypes --------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        for _, module in self.named_modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, flag: bool = True):
        for p in self.parameters():
            p.requires_grad = flag
        return self

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def astype(self, dtype):
        """Convert every parameter to `dtype` in place (e.g. np.float64 for gradient checks)."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        return self

    # ---- state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Parameter name -> its array (the arrays themselves, not copies)."""
        return OrderedDict((name, p.data) for name, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays into the parameters of the same name, cast to each parameter's dtype.

        Every tensor is checked before anything is copied (`check_state`); one error lists all problems.
        With strict=False, missing and unexpected keys are returned instead of raised (shapes, dtypes and
        values are always checked). Returns (missing_keys, unexpected_keys).
        """
        own = dict(self.named_parameters())
        check_state({k: p.shape for k, p in own.items()}, state_dict, what=f"state dict for {type(self).__name__}",
                    required=own if strict else (), allow_unexpected=not strict)
        for k, v in state_dict.items():
            if k in own:
                own[k].data = np.array(v, dtype=own[k].dtype, copy=True)
        return [k for k in own if k not in state_dict], [k for k in state_dict if k not in own]

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, module in self._modules.items():
            lines.append(f"  ({name}): " + repr(module).replace("\n", "\n  "))
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"


class Linear(Module):
    """y = x @ weight^T + bias, weight (out_features, in_features) as in PyTorch / Hugging Face.

    Convention: initialised N(0, init_std) with zero bias, as BERT initialises every dense layer
    (`initializer_range` = 0.02 in its config).
    Convention: `hook` is one generic slot for methods that live inside a Linear (a low-rank update, a learned
    rescaling): None (the default) is y = affine(x); otherwise a function (x, affine) -> y, where affine is this
    layer's own x @ weight^T + bias. Whoever sets it registers the module behind it.
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, init_std=0.02, rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(rng.normal(0.0, init_std, (out_features, in_features)).astype(dtype))
        self.bias = Parameter(np.zeros(out_features, dtype=dtype)) if bias else None
        self.hook = None

    def affine(self, x):
        return F.linear(x, self.weight, self.bias)

    def forward(self, x):
        if self.hook is not None:
            return self.hook(x, self.affine)
        return self.affine(x)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Embedding(Module):
    """Lookup table: ids (...) -> rows of weight (num_embeddings, embedding_dim)."""

    def __init__(self, num_embeddings, embedding_dim, *, dtype=np.float32, init_std=0.02, rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(rng.normal(0.0, init_std, (num_embeddings, embedding_dim)).astype(dtype))

    def forward(self, ids):
        return F.embedding(ids, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Normalise the last axis to zero mean, unit variance, then scale by weight and shift by bias."""

    def __init__(self, normalized_shape, eps=1e-5, *, dtype=np.float32):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(np.ones(normalized_shape, dtype=dtype))
        self.bias = Parameter(np.zeros(normalized_shape, dtype=dtype))

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.weight.shape}, eps={self.eps}"


class Dropout(Module):
    """Zero elements with probability p in training mode (see F.dropout); identity in eval mode."""

    def __init__(self, p=0.1, *, rng=None):
        super().__init__()
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng()

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self):
        return f"p={self.p}"


class ModuleList(Module):
    """A list of modules registered under "0", "1", ... (so names read `encoder.layer.3.output`)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        setattr(self, str(len(self._modules)), module)
        return self

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class Sequential(ModuleList):
    """Modules applied one after the other."""

    def __init__(self, *modules):
        super().__init__(modules)

    def forward(self, x):
        for module in self:
            x = module(x)
        return x


class ModuleDict(Module):
    """Modules registered under string keys: `{key}.weight` and so on."""

    def __init__(self, modules=None):
        super().__init__()
        for name, module in (modules or {}).items():
            self[name] = module

    def __setitem__(self, name, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict values must be Modules, got {type(module).__name__}")
        setattr(self, name, module)

    def __getitem__(self, name):
        return self._modules[name]

    def __delitem__(self, name):
        delattr(self, name)

    def __contains__(self, name):
        return name in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def items(self):
        return self._modules.items()
