"""Tensor hashes: equal tensors hash equal whatever their memory layout; dtype and shape count."""

import torch

from workbench.core.hashing import tensor_hash


def test_a_one_column_tensor_with_a_long_stride_hashes_like_its_copy():
    # A one-request MEMIT delta is (d, 1) with strides (1, d): contiguous by torch's rule, yet a
    # byte view of it fails; saving or exporting such an edit must not.
    column = torch.arange(512.0).as_strided((512, 1), (1, 512))
    assert column.is_contiguous() and column.stride() == (1, 512)
    assert tensor_hash(column) == tensor_hash(torch.arange(512.0).reshape(512, 1))


def test_layouts_do_not_change_the_hash_but_values_dtype_and_shape_do():
    x = torch.randn(3, 4)
    assert tensor_hash(x.T.contiguous().T) == tensor_hash(x)
    assert tensor_hash(x.T) != tensor_hash(x)
    assert tensor_hash(x.double()) != tensor_hash(x)
    assert tensor_hash(x.reshape(4, 3)) != tensor_hash(x)
    assert tensor_hash(torch.zeros(0)) != tensor_hash(torch.zeros(0, 1))
