"""Shared pytest fixtures. The loopback Hub lives in ``hub_server.py`` (see its docstring)."""

import os

import pytest
import torch
from hub_server import HubServer, configure_hub, unused_local_url

# Under pytest-xdist each worker gets one intra-op thread: two workers with two threads each on a 2-core machine
# only fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture
def hub_server():
    """A running in-memory loopback Hub (``HubServer``); stopped after the test."""
    with HubServer() as server:
        yield server
    assert not server.errors, f"hub_server.py failed on requests: {server.errors!r}"


@pytest.fixture
def hub_env(hub_server, tmp_path, monkeypatch):
    """``hub_server``, with huggingface_hub pointed at it and at an empty cache under ``tmp_path/hf_home``."""
    configure_hub(monkeypatch, hub_server.url, tmp_path / "hf_home")
    return hub_server


@pytest.fixture
def hub_unreachable(tmp_path, monkeypatch):
    """huggingface_hub pointed at a local port where nothing listens, and an empty cache; returns the URL."""
    url = unused_local_url()
    configure_hub(monkeypatch, url, tmp_path / "hf_home")
    return url
