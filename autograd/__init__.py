"""A small reverse-mode automatic differentiation engine over NumPy arrays.

    from autograd import Tensor, no_grad
    import autograd.functional as F
    from autograd import nn, optim
    from autograd.gradcheck import gradcheck, GradcheckError
"""

from autograd import functional, gradcheck, kernels, nn, optim
from autograd.ops import concatenate, stack, where
from autograd.tensor import Function, Tensor, as_tensor, is_grad_enabled, no_grad, unbroadcast

__all__ = ["Tensor", "Function", "as_tensor", "no_grad", "is_grad_enabled", "unbroadcast", "concatenate", "stack",
           "where", "functional", "gradcheck", "kernels", "nn", "optim"]
