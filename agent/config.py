"""The agent's settings, read once from the environment (prefix ``PROMPTER_AGENT_``).

Kept apart from ``service.settings`` until the lead folds them in; the names are the ones proposed there.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

StrategyName = Literal["retrieval", "fixed_demos", "definitions", "rewrite"]


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROMPTER_AGENT_", extra="ignore")

    enabled: bool = Field(default=True, description="Record corrections and refine prompts in the background.")
    disagreements_trigger: int = Field(
        default=10, ge=1, description="Start a refinement after this many new disagreements in a project."
    )
    strategies: list[StrategyName] = Field(
        default=["retrieval", "fixed_demos", "definitions", "rewrite"], description="Strategies tried per refinement."
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
    refit_pool: bool = Field(
        default=True,
        description="Unused since refinements cross-validate: a retrieval pool always holds every annotated task "
        "(each fold validated without its own tasks).",
    )
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


agent_settings = AgentSettings()
