"""Runner glue: a multi-output step that every runner routes right.

``beam.ParDo(fn).with_outputs(...)`` is the idiom, but Beam 2.77's DaskRunner keeps all
outputs of a ParDo in one bag: each consumer of any tag then sees every element (see
docs/deploy.md, "Dask"). ``with_outputs`` here runs ``fn`` unchanged, emits
``(tag, value)`` pairs as one collection, and selects each tag from it with a plain
FlatMap, which every runner handles. Timestamps and windows are kept (the pairs are
emitted in the element's window). The business DoFns do not change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam import pvalue


class _AsTagged(beam.DoFn):
    """``fn``'s outputs as ``(tag, value)``; the main output's tag is None."""

    def __init__(self, fn: beam.DoFn) -> None:
        self.fn = fn

    def setup(self) -> None:
        self.fn.setup()

    def start_bundle(self) -> None:
        self.fn.start_bundle()

    # No type hints here: Beam would check them against the side inputs.
    def process(self, element, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        for out in self.fn.process(element, *args, **kwargs) or ():
            if isinstance(out, pvalue.TaggedOutput):
                yield out.tag, out.value
            else:
                yield None, out

    def finish_bundle(self) -> None:
        if self.fn.finish_bundle() is not None:
            raise NotImplementedError(f"{type(self.fn).__name__} emits in finish_bundle")

    def teardown(self) -> None:
        self.fn.teardown()


def _select(pair: tuple, tag: str | None) -> Iterator[Any]:
    if pair[0] == tag:
        yield pair[1]


class Outputs:
    """A step's outputs by tag, as ``DoOutputsTuple``: ``outputs.events``, ``outputs[tag]``."""

    def __init__(self, by_tag: dict[str, beam.PCollection]) -> None:
        self._by_tag = by_tag

    def __getitem__(self, tag: str) -> beam.PCollection:
        return self._by_tag[tag]

    def __getattr__(self, name: str) -> beam.PCollection:
        try:
            return self._by_tag[name]
        except KeyError:
            raise AttributeError(name) from None


def with_outputs(pcoll: beam.PCollection, label: str, fn: beam.DoFn, *side_inputs: Any,
                 tags: Sequence[str], main: str) -> Outputs:
    """``pcoll | label >> ParDo(fn, *side_inputs).with_outputs(*tags, main=main)``,
    routed the same on every runner."""
    pairs = pcoll | label >> beam.ParDo(_AsTagged(fn), *side_inputs)
    by_tag = {main: pairs | f"{label}_{main}" >> beam.FlatMap(_select, None)}
    for tag in tags:
        by_tag[tag] = pairs | f"{label}_{tag}" >> beam.FlatMap(_select, tag)
    return Outputs(by_tag)
