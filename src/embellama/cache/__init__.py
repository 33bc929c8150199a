"""The embedding cache: pooled vectors by (model identity, pooling, token ids).

`memory.py` is a byte-bounded LRU, `redis.py` a shared tier for replicas, `tiered.py`
puts memory in front of Redis and adds single-flight. Normalization and `dimensions`
are applied after the cache, so one stored vector serves every request shape. The
pipeline is the only caller; nothing here knows about HTTP or llama.cpp.
"""

from embellama.cache.keys import CacheKey, ModelTag, parse_size
from embellama.cache.memory import MemoryCache
from embellama.cache.tiered import CacheStats, EmbeddingCache

__all__ = ["CacheKey", "CacheStats", "EmbeddingCache", "MemoryCache", "ModelTag", "parse_size"]
