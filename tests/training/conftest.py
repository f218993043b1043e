import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The training tests use tiny tensors: intra-op threads only add synchronisation, and on a shared machine
    they can make each op orders of magnitude slower. Results do not depend on the thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
