"""The file names of the TFRecord shards: rule write_shards declares them when Snakemake builds
the DAG, so they live apart from cxr.shards (which writes them, with numpy, pandas and Pillow)."""

from __future__ import annotations


def shard_names(count: int) -> list[str]:
    """The file names of `count` shards (the rule declares them; write_shards writes them)."""
    return [f"images-{k:05d}-of-{count:05d}.tfrecord" for k in range(count)]
