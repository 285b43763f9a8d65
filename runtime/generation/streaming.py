"""Streaming: generated tokens to text pieces as they come, as transformers' TextStreamer cuts
them (whole words; a line or a CJK character at once), and an iterator over those pieces."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np

from ..errors import InputError

# CJK Unified Ideographs and their extensions: each character is a word (transformers' list).
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_cjk(character: str) -> bool:
    code = ord(character)
    return any(low <= code <= high for low, high in _CJK)


class TextStreamer:
    """Collects one row's new tokens and calls ``on_text`` with each piece of text that is final:
    up to the last space, a whole line, or a CJK character; ``end()`` gives the rest.

    >>> pieces = []
    >>> streamer = TextStreamer(tokenizer, pieces.append)                # doctest: +SKIP
    """

    def __init__(self, tokenizer, on_text: Callable[[str], None], *,
                 skip_special_tokens: bool = True, clean_up_tokenization_spaces: bool = False):
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.options = {"skip_special_tokens": skip_special_tokens,
                        "clean_up_tokenization_spaces": clean_up_tokenization_spaces}
        self.tokens: list[int] = []
        self.printed = 0

    def put(self, tokens: np.ndarray) -> None:
        """A step's new tokens: one row only (as transformers' streamers)."""
        tokens = np.asarray(tokens).reshape(-1)
        if tokens.size != 1:
            raise InputError(
                f"Streaming follows one sequence, but this step made {tokens.size}. Note: "
                "stream one prompt at a time, without num_return_sequences > 1."
            )
        self.tokens.append(int(tokens[0]))
        text = self.tokenizer.decode(self.tokens, **self.options)
        if text.endswith("\n"):
            piece, self.tokens, self.printed = text[self.printed:], [], 0
        elif text and _is_cjk(text[-1]):
            piece = text[self.printed:]
            self.printed += len(piece)
        else:
            piece = text[self.printed:text.rfind(" ") + 1]
            self.printed += len(piece)
        if piece:
            self.on_text(piece)

    def end(self) -> None:
        """The text not given yet."""
        text = self.tokenizer.decode(self.tokens, **self.options) if self.tokens else ""
        piece = text[self.printed:]
        self.tokens, self.printed = [], 0
        if piece:
            self.on_text(piece)


def iterate(run: Callable[[Callable[[str], None]], object]) -> Iterator[str]:
    """The text pieces ``run(on_text)`` produces, as an iterator: ``run`` generates in a
    background thread and calls ``on_text`` with each piece. An error in ``run`` is raised
    from the iterator; leaving the loop early lets the generation finish in the background."""
    pieces: queue.Queue = queue.Queue()
    done = object()
    failure: list[BaseException] = []

    def work():
        try:
            run(pieces.put)
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            failure.append(exc)
        finally:
            pieces.put(done)

    threading.Thread(target=work, daemon=True, name="edgeport-generate").start()
    while (piece := pieces.get()) is not done:
        yield piece
    if failure:
        raise failure[0]
