"""Shared fixtures: the official data files (read from ../shared/data) and a tiny offline model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("MALPYEONG_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The official data folder; the tests need it beside the project, as CI provides it."""
    if not (DATA_DIR / "korean_language_rag_V1.0_train.json").is_file():
        pytest.fail(f"official data not found in {DATA_DIR} (set MALPYEONG_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Gemma3 causal LM with its own tokenizer, built offline once per session."""
    from tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))
