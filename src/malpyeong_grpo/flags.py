"""One flag dialect for every verb: TRL's (``--num_shots``), with the old hyphen spelling accepted for one release.

``parser.add_argument(*flag("num_shots"), ...)`` registers ``--num_shots`` first (the name the help shows) and
``--num-shots`` as its alias; both set the same value. ``--chat yes|no|auto`` is the old spelling of
``--prompt_format chat|text|auto`` (the recipes' ``prompt_format``).
"""

from __future__ import annotations

import argparse
from typing import Any

PROMPT_FORMATS = ("auto", "chat", "text")
RETRIEVAL_METHODS = ("bm25", "dense", "hybrid", "learned")
DEFAULT_RETRIEVAL = "bm25"  # train's ScriptArguments.retrieval_method, predict, evaluate and retrieve alike
CHAT_TO_PROMPT_FORMAT = {"auto": "auto", "yes": "chat", "no": "text"}
PROMPT_FORMAT_TO_CHAT = {v: k for k, v in CHAT_TO_PROMPT_FORMAT.items()}


def flag(name: str) -> list[str]:
    """Option strings of one flag: the underscore spelling first, then the hyphen alias when it differs."""
    under = "--" + name.lstrip("-").replace("-", "_")
    hyphen = under[:2] + under[2:].replace("_", "-")
    return [under] if hyphen == under else [under, hyphen]


class _ChatAlias(argparse.Action):
    """``--chat yes|no|auto``: sets ``prompt_format`` to chat, text or auto."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        setattr(namespace, self.dest, CHAT_TO_PROMPT_FORMAT[values])


def add_prompt_format(container: Any, help_: str) -> None:
    """``--prompt_format auto|chat|text`` (default auto) and its old spelling ``--chat auto|yes|no``."""
    container.add_argument(*flag("prompt_format"), choices=PROMPT_FORMATS, default="auto", help=help_)
    container.add_argument(
        "--chat",
        dest="prompt_format",
        choices=list(CHAT_TO_PROMPT_FORMAT),
        action=_ChatAlias,
        default=argparse.SUPPRESS,
        help="old spelling of --prompt_format (yes: chat, no: text), accepted for one release",
    )
