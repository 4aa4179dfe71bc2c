import pytest
import torch

from geo_assets.ml.device import select_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def test_cpu():
    assert select_device("cpu") == torch.device("cpu")


def test_auto_picks_cuda_only_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_gpu_is_a_clear_error(name):
    with pytest.raises(ValueError, match="CUDA is not available"):
        select_device(name)


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:", "cuda:x", "", "cpu:0"])
def test_unknown_names_list_accepted_values(name):
    with pytest.raises(ValueError, match="accepted: auto, cpu, cuda, cuda:N"):
        select_device(name)
