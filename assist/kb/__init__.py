"""The local knowledge base (capability C4): articles, passages, embeddings, FAISS and BM25.

`layout` is cheap to import (paths and readiness); `articles`, `lexical`, `embedder` and
`index` bring NumPy, SciPy, FAISS and (for embeddings) torch, and are imported only by the
worker, the `assist-kb` CLI and the benchmarks.
"""
