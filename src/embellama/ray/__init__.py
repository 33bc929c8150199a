"""Ray for embellama users: corpus jobs on Ray Data, and serving on Ray Serve.

    from embellama.ray import embed_dataset
    ds = embed_dataset(ray.data.read_parquet("s3://bucket/docs/"), model="/models/bge.gguf")

The job itself lives in `embellama.corpus.ray` (beside the local corpus job it shares
rows and reports with); this package re-exports it under the name users know, and holds
the Ray Serve replica (`embellama.ray.serve`), an entry point like the CLI.
`pip install 'embellama[ray]'`.
"""

from embellama.corpus.ray import EmbedActor, actor_cpus, embed_dataset, embed_file

__all__ = ["EmbedActor", "actor_cpus", "embed_dataset", "embed_file"]
