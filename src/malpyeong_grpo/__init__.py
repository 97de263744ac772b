"""malpyeong-grpo: GRPO with the competition's metrics as rewards, and RAG over the rule document, for the
2025 국립국어원 AI 말평 task "한국어 어문 규범 기반 생성(RAG)"."""

__version__ = "0.1.0"
